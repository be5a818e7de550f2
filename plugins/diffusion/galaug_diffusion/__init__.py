"""galaug-diffusion: a second generator, written only against galaug's public API (registered lazily)."""

from galaug import hookimpl


@hookimpl
def galaug_register(register):
    register.generator("galaug_diffusion.generator:Diffusion", name="diffusion",
                       summary="Conditional flow matching (rectified flow) with a U-Net, sampled by a deterministic ODE")
