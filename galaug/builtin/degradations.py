"""Built-in plugin: degradations (registered like a third-party plugin), and ``galaug degrade``.

Every component is registered by import path, so listing plugins never
imports torch.
"""

from galaug.hookspecs import hookimpl

#: (import path, name, summary) of every built-in degradation.
DEGRADATIONS = (
    ("galaug.degrade.psf:GaussianPSF", "psf-gaussian", "Gaussian PSF: sigma or fwhm in pixels or arcsec, per band allowed"),
    ("galaug.degrade.psf:MoffatPSF", "psf-moffat", "Moffat PSF: beta, and fwhm in pixels or arcsec, per band allowed"),
    ("galaug.degrade.psf:KernelPSF", "psf-kernel", "PSF kernel from a FITS file, 2-d or one plane per band"),
    ("galaug.degrade.noise:GaussianNoise", "noise-gaussian", "Gaussian noise of std (the data's flux unit), per band allowed"),
    ("galaug.degrade.noise:PoissonNoise", "noise-poisson", "Poisson noise: Poisson(x * gain) / gain, gain in counts per data unit"),
    ("galaug.degrade.noise:CCDNoise", "noise-ccd", "CCD noise as GalSim: gain (required) e- per data unit, sky_level data units, read_noise e-"),
    ("galaug.degrade.resample:Resample", "resample", "Coarser pixels by area (scale: new pixel in old pixels or arcsec), flux conserved"),
)


@hookimpl
def galaug_register(register):
    for target, name, summary in DEGRADATIONS:
        register.degradation(target, name=name, summary=summary)


@hookimpl
def galaug_cli(cli):
    from galaug.cli.degrade import degrade_cmd

    cli.add_command(degrade_cmd)
