"""The ``sersic`` source: single Sersic profiles, each fully defined by seven parameters.

Drawn with GalSim: an exact Sersic profile, sheared to axis ratio ``q``
at position angle ``beta``, shifted to ``(x, y)``, convolved with the
instrument PSF and integrated over pixels (``drawImage(method="auto")``).
The defaults follow the published study: x, y ~ U(-1, 1) arcsec,
half-light radius ~ U(1, 4) arcsec, n ~ U(1, 4), q ~ U(0.4, 1),
beta ~ U(0, pi), flux fixed. To put the fluxes on a survey's scale, draw
AB magnitudes (``mag_range``) with the ``zero_point`` of ``flux_unit``,
and multiply every pixel by ``flux_scale``; ``band_flux`` is the colour.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import astropy.units as u
import numpy as np

from galaug.errors import require
from galaug.kinds import Layout, Simulator

_INSTALL = "pip install 'galaug[astro]'"

__all__ = ["SersicConfig", "Sersic", "PARAM_NAMES", "draw_sersic"]

PARAM_NAMES = ("x", "y", "r_half", "n", "q", "beta", "flux")


def _check_range(name: str, lo_hi: tuple[float, float], *, low: float = -math.inf, high: float = math.inf) -> None:
    lo, hi = lo_hi
    if not (low <= lo <= hi <= high):
        raise ValueError(f"{name} must satisfy {low} <= min <= max <= {high}, got {lo_hi}")


@dataclasses.dataclass
class SersicConfig:
    """Options of the ``sersic`` source. Lengths in arcsec, angles in radians."""

    image_size: int = 64
    #: arcsec per pixel (SDSS r-band value)
    pixel_scale: float = 0.396
    bands: tuple[str, ...] = ("r",)
    #: flux multiplier per band (empty: 1 in every band)
    band_flux: tuple[float, ...] = ()
    x_range: tuple[float, float] = (-1.0, 1.0)
    y_range: tuple[float, float] = (-1.0, 1.0)
    #: circularised half-light radius sqrt(a * b), arcsec
    r_half_range: tuple[float, float] = (1.0, 4.0)
    n_range: tuple[float, float] = (1.0, 4.0)
    q_range: tuple[float, float] = (0.4, 1.0)
    beta_range: tuple[float, float] = (0.0, math.pi)
    #: total flux (before the stamp cuts the wings and before flux_scale), used without flux_range and mag_range
    flux: float = 1000.0
    #: draw flux ~ U(min, max) instead of the fixed value
    flux_range: tuple[float, ...] = ()
    #: draw an AB magnitude ~ U(min, max) instead, flux = 10**((zero_point - mag) / 2.5)
    mag_range: tuple[float, ...] = ()
    #: AB magnitude of one flux_unit (31.4 for nJy, 22.5 for nanomaggies); needed with mag_range
    zero_point: float | None = None
    flux_unit: str = "adu"
    #: every pixel (galaxy and noise) multiplied by this at the end, e.g. a gain; the flux param includes it
    flux_scale: float = 1.0
    psf: Literal["gaussian", "moffat", "none"] = "gaussian"
    #: PSF full width at half maximum, arcsec
    psf_fwhm: float = 1.0
    psf_beta: float = 3.5
    #: Gaussian pixel noise in flux_unit, before flux_scale (0: noiseless, as in the study's latent experiment)
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        if not 8 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be between 8 and 1024, got {self.image_size}")
        if self.pixel_scale <= 0:
            raise ValueError("pixel_scale must be positive")
        if not self.bands:
            raise ValueError("bands must not be empty")
        if self.band_flux and len(self.band_flux) != len(self.bands):
            raise ValueError(f"band_flux has {len(self.band_flux)} values for {len(self.bands)} bands")
        _check_range("x_range", self.x_range)
        _check_range("y_range", self.y_range)
        _check_range("r_half_range", self.r_half_range, low=1e-3)
        _check_range("n_range", self.n_range, low=0.3, high=6.2)  # GalSim's Sersic limits
        _check_range("q_range", self.q_range, low=0.05, high=1.0)
        _check_range("beta_range", self.beta_range)
        if self.flux_range:
            if len(self.flux_range) != 2:
                raise ValueError("flux_range must be empty or (min, max)")
            _check_range("flux_range", tuple(self.flux_range), low=0.0)  # type: ignore[arg-type]
        if self.mag_range:
            if len(self.mag_range) != 2 or self.flux_range:
                raise ValueError("mag_range must be empty or (min, max), and not given with flux_range")
            _check_range("mag_range", tuple(self.mag_range), low=-50.0, high=100.0)  # type: ignore[arg-type]
            if self.zero_point is None:
                raise ValueError("mag_range needs zero_point: the AB magnitude of one flux_unit (31.4 for nJy)")
        if self.zero_point is not None and not math.isfinite(self.zero_point):
            raise ValueError("zero_point must be finite")
        if not (math.isfinite(self.flux_scale) and self.flux_scale > 0):
            raise ValueError(f"flux_scale must be positive, got {self.flux_scale}")
        if self.psf != "none" and self.psf_fwhm <= 0:
            raise ValueError("psf_fwhm must be positive")
        if self.noise_std < 0:
            raise ValueError("noise_std must be >= 0")


def _psf(config: SersicConfig):
    galsim = require("galsim", "the sersic source", _INSTALL)

    if config.psf == "gaussian":
        return galsim.Gaussian(fwhm=config.psf_fwhm)
    if config.psf == "moffat":
        return galsim.Moffat(beta=config.psf_beta, fwhm=config.psf_fwhm)
    return None


def draw_sersic(params: Sequence[float], config: SersicConfig, *, noise_seed: int | None = None) -> np.ndarray:
    """Draw one (C, H, W) image from its seven parameters (x, y, r_half, n, q, beta, flux).

    ``flux`` is the flux in the images (``flux_scale`` included); the noise
    is ``noise_std * flux_scale``.
    """
    galsim = require("galsim", "the sersic source", _INSTALL)

    x, y, r_half, n, q, beta, flux = (float(p) for p in params)
    gsparams = galsim.GSParams(maximum_fft_size=16384)
    gal = galsim.Sersic(n=n, half_light_radius=r_half, flux=flux, gsparams=gsparams)
    gal = gal.shear(q=q, beta=beta * galsim.radians).shift(x, y)
    psf = _psf(config)
    obj = galsim.Convolve(gal, psf, gsparams=gsparams) if psf is not None else gal
    size = config.image_size
    image = obj.drawImage(nx=size, ny=size, scale=config.pixel_scale, method="auto").array.astype(np.float32)
    scales = config.band_flux or (1.0,) * len(config.bands)
    out = np.stack([image * np.float32(s) for s in scales])
    if config.noise_std > 0:
        rng = np.random.default_rng(noise_seed)
        out += rng.normal(0.0, config.noise_std * config.flux_scale, size=out.shape).astype(np.float32)
    return out


class Sersic(Simulator):
    """Single Sersic profiles, each fully defined by seven parameters (GalSim)."""

    name = "sersic"
    Config = SersicConfig

    def layout(self) -> Layout:
        c = self.config
        return Layout(bands=tuple(c.bands), image_size=c.image_size, pixel_scale=c.pixel_scale * u.arcsec,
                      flux_unit=c.flux_unit, param_names=PARAM_NAMES,
                      param_units=("arcsec", "arcsec", "arcsec", "", "", "rad", c.flux_unit))

    def sample_params(self, row: int, *, seed: int) -> tuple[np.ndarray, int]:
        """The seven parameters of ``row`` and its noise seed; they depend only on (seed, row)."""
        c = self.config
        rng = np.random.default_rng([seed, row])
        if c.flux_range:
            flux = rng.uniform(*c.flux_range)
        elif c.mag_range:
            flux = 10 ** ((c.zero_point - rng.uniform(*c.mag_range)) / 2.5)
        else:
            flux = c.flux
        params = np.array([rng.uniform(*c.x_range), rng.uniform(*c.y_range), rng.uniform(*c.r_half_range),
                           rng.uniform(*c.n_range), rng.uniform(*c.q_range), rng.uniform(*c.beta_range),
                           flux * c.flux_scale])
        return params, int(rng.integers(2**63))

    def draw(self, rows: Sequence[int], *, seed: int) -> tuple[np.ndarray, np.ndarray]:
        images, params = [], []
        for row in rows:
            p, noise_seed = self.sample_params(int(row), seed=seed)
            images.append(draw_sersic(p, self.config, noise_seed=noise_seed))
            params.append(p)
        return np.stack(images), np.asarray(params, dtype=np.float32)
