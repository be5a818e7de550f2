"""galaug-denoise: the reference task plugin (registered lazily: listing plugins never imports torch)."""

from galaug import hookimpl

__all__ = ["galaug_register"]


@hookimpl
def galaug_register(register):
    register.task("galaug_denoise.task:Denoise", name="denoise",
                  summary="Denoiser (residual CNN or U-Net) under on-the-fly degradations; MSE, PSNR, SSIM")
