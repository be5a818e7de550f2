"""galaug-alae: the reference generator plugin (registered lazily: listing plugins never imports torch)."""

from galaug import hookimpl


@hookimpl
def galaug_register(register):
    register.generator("galaug_alae.generator:Alae", name="alae",
                       summary="Adversarial Latent Autoencoder (Pidhorskyi et al. 2020) for multi-band float images")
