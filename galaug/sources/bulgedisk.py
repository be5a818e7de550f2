"""The ``bulgedisk`` source: multi-band bulge + disk + star-forming knots galaxies.

The embedded stand-in for simulation mocks such as TNG-100 SKIRT images,
and the default "real" data of the demo. Each galaxy (drawn with GalSim) is

- a Sersic bulge (n ~ U(2.5, 4.5), truncated at 8 half-light radii), red;
- an inclined exponential disk (random orientation on the sky: cos(i) ~ U(0.05, 1),
  thickness h/r = 0.1), bluer;
- star-forming knots (GalSim's ``RandomKnots``) following the disk, bluest;
- optionally faint neighbours;

each component with its own colour in g, r, i, z (a per-galaxy random
colour jitter), convolved with a per-band Moffat PSF, pixel-integrated,
plus Gaussian sky noise per band. Fluxes are in nJy by default (AB zero
point 31.4); ``zero_point``, ``flux_unit``, ``flux_scale`` and the
component colours are config keys, so simulated fluxes can be put on a
survey's scale (nanomaggies: ``zero_point = 22.5``, ``flux_unit = "nmgy"``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import astropy.units as u
import numpy as np

from galaug.errors import require
from galaug.kinds import Layout, Simulator

__all__ = ["BulgeDiskConfig", "BulgeDisk", "PARAM_NAMES"]

PARAM_NAMES = ("mag_r", "bulge_fraction", "bulge_r_half", "bulge_n", "disk_r_scale", "inclination", "beta",
               "knot_fraction", "x", "y", "n_neighbours")
PARAM_UNITS = ("mag", "", "arcsec", "", "arcsec", "rad", "rad", "", "arcsec", "arcsec", "")

#: Flux per band relative to r, for each component (g, r, i, z): an old red bulge,
#: a bluer disk and young blue knots.
COLOURS = {
    "bulge": {"g": 0.45, "r": 1.0, "i": 1.35, "z": 1.6},
    "disk": {"g": 0.95, "r": 1.0, "i": 0.95, "z": 0.9},
    "knots": {"g": 1.8, "r": 1.0, "i": 0.6, "z": 0.45},
}
ZERO_POINT_NJY = 31.4  # AB magnitude of 1 nJy


@dataclasses.dataclass
class BulgeDiskConfig:
    """Options of the ``bulgedisk`` source. Lengths in arcsec, fluxes in nJy."""

    image_size: int = 64
    #: arcsec per pixel
    pixel_scale: float = 0.2
    #: any subset of g, r, i, z, blue to red
    bands: tuple[str, ...] = ("g", "r", "i", "z")
    #: total r-band magnitude ~ U(min, max)
    mag_range: tuple[float, float] = (17.5, 20.5)
    #: bulge-to-total flux ratio ~ Beta(a, b) (r band)
    bulge_fraction_beta: tuple[float, float] = (1.5, 3.0)
    bulge_r_half_range: tuple[float, float] = (0.3, 1.0)
    disk_r_scale_range: tuple[float, float] = (0.7, 2.0)
    #: fraction of the disk light in knots ~ U(min, max)
    knot_fraction_range: tuple[float, float] = (0.1, 0.4)
    n_knots_range: tuple[int, int] = (10, 40)
    #: centre offset ~ U(-max, max) in x and y, arcsec
    max_offset: float = 0.6
    #: mean number of faint neighbours per stamp (Poisson); 0 for none
    neighbours: float = 0.6
    #: Moffat PSF FWHM per band (g, r, i, z), arcsec
    psf_fwhm: tuple[float, ...] = (0.9, 0.8, 0.75, 0.75)
    psf_beta: float = 3.5
    #: sky noise sigma per band (g, r, i, z), in flux units (nJy by default) per pixel; all 0 for noiseless
    sky_sigma: tuple[float, ...] = (25.0, 30.0, 45.0, 70.0)
    #: random colour jitter of each component (fractional, per band)
    colour_jitter: float = 0.1
    #: flux per band relative to r (g, r, i, z) of the bulge, the disk and the knots
    bulge_colour: tuple[float, ...] = tuple(COLOURS["bulge"].values())
    disk_colour: tuple[float, ...] = tuple(COLOURS["disk"].values())
    knot_colour: tuple[float, ...] = tuple(COLOURS["knots"].values())
    #: AB magnitude of one flux unit: 31.4 for nJy, 22.5 for nanomaggies
    zero_point: float = ZERO_POINT_NJY
    #: the unit the zero point gives (recorded in the dataset)
    flux_unit: str = "nJy"
    #: every pixel (galaxy and sky noise) multiplied by this at the end, e.g. a survey's gain
    flux_scale: float = 1.0

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be between 16 and 1024, got {self.image_size}")
        if self.pixel_scale <= 0:
            raise ValueError("pixel_scale must be positive")
        unknown = [b for b in self.bands if b not in COLOURS["bulge"]]
        if unknown or not self.bands:
            raise ValueError(f"bands must be a subset of g, r, i, z, got {list(self.bands)}")
        for name in ("psf_fwhm", "sky_sigma"):
            value = getattr(self, name)
            if len(value) not in (1, 4) and len(value) != len(self.bands):
                raise ValueError(f"{name} needs 1, 4 (g, r, i, z) or one value per band, got {len(value)}")
            if any(v < 0 for v in value) or (name == "psf_fwhm" and any(v == 0 for v in value)):
                raise ValueError(f"{name} must be positive")
        lo, hi = self.n_knots_range
        if not 0 <= lo <= hi:
            raise ValueError("n_knots_range must satisfy 0 <= min <= max")
        if self.neighbours < 0 or self.max_offset < 0 or self.colour_jitter < 0:
            raise ValueError("neighbours, max_offset and colour_jitter must be >= 0")
        for name in ("bulge_colour", "disk_colour", "knot_colour"):
            value = tuple(getattr(self, name))
            if len(value) != 4 or any(not (v >= 0 and math.isfinite(v)) for v in value):
                raise ValueError(f"{name} needs 4 fluxes relative to r (g, r, i, z), each >= 0, got {list(value)}")
        if not (math.isfinite(self.zero_point) and math.isfinite(self.flux_scale) and self.flux_scale > 0):
            raise ValueError("zero_point must be finite and flux_scale positive")
        if not self.flux_unit.strip():
            raise ValueError("flux_unit must name a unit")

    def per_band(self, name: str) -> list[float]:
        """``psf_fwhm`` or ``sky_sigma`` for each of ``bands``."""
        value = list(getattr(self, name))
        if len(value) == 1:
            return value * len(self.bands)
        if len(value) == 4 and len(self.bands) != 4:
            return [value["griz".index(b)] for b in self.bands]
        return value


class BulgeDisk(Simulator):
    """Multi-band bulge + disk + knots galaxies with neighbours and sky noise (GalSim)."""

    name = "bulgedisk"
    Config = BulgeDiskConfig

    def layout(self) -> Layout:
        c = self.config
        return Layout(bands=tuple(c.bands), image_size=c.image_size, pixel_scale=c.pixel_scale * u.arcsec,
                      flux_unit=c.flux_unit, param_names=PARAM_NAMES, param_units=PARAM_UNITS)

    def draw(self, rows: Sequence[int], *, seed: int) -> tuple[np.ndarray, np.ndarray]:
        images, params = [], []
        for row in rows:
            image, p = self._draw_one(np.random.default_rng([seed, int(row)]))
            images.append(image)
            params.append(p)
        return np.stack(images), np.asarray(params, dtype=np.float32)

    def _draw_one(self, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
        galsim = require("galsim", "the bulgedisk source", "pip install 'galaug[astro]'")

        c = self.config
        gsp = galsim.GSParams(maximum_fft_size=16384)
        mag = rng.uniform(*c.mag_range)
        flux = 10 ** ((c.zero_point - mag) / 2.5)
        colours = {"bulge": dict(zip("griz", c.bulge_colour)), "disk": dict(zip("griz", c.disk_colour)),
                   "knots": dict(zip("griz", c.knot_colour))}
        bt = rng.beta(*c.bulge_fraction_beta)
        bulge_hlr, bulge_n = rng.uniform(*c.bulge_r_half_range), rng.uniform(2.5, 4.5)
        disk_h = rng.uniform(*c.disk_r_scale_range)
        incl = math.acos(rng.uniform(0.05, 1.0))
        beta = rng.uniform(0, math.pi)
        knot_frac = rng.uniform(*c.knot_fraction_range)
        n_knots = int(rng.integers(c.n_knots_range[0], c.n_knots_range[1] + 1))
        dx, dy = rng.uniform(-c.max_offset, c.max_offset, size=2)
        knot_seed = int(rng.integers(1, 2**31))
        jitter = {k: 1 + c.colour_jitter * rng.uniform(-1, 1, size=len(c.bands)) for k in COLOURS}

        rot = beta * galsim.radians
        # truncated at 8 half-light radii: 3x faster than an infinite n=4 profile, the flux is the same to 0.1%
        bulge = galsim.Sersic(n=bulge_n, half_light_radius=bulge_hlr, trunc=8 * bulge_hlr, gsparams=gsp)
        bulge = bulge.shear(q=max(0.6, math.cos(incl)) ** 0.3, beta=rot)
        disk = galsim.InclinedExponential(incl * galsim.radians, scale_radius=disk_h, scale_h_over_r=0.1,
                                          gsparams=gsp).rotate(rot)
        knots = None
        if n_knots > 0 and knot_frac > 0:
            knots = galsim.RandomKnots(n_knots, half_light_radius=1.68 * disk_h, rng=galsim.BaseDeviate(knot_seed),
                                       gsparams=gsp).shear(q=max(math.cos(incl), 0.1), beta=rot)
        neighbours = []
        for _ in range(int(rng.poisson(c.neighbours))):
            half = c.image_size * c.pixel_scale / 2
            nb_flux = flux * rng.uniform(0.02, 0.2)
            nb_hlr = rng.uniform(0.2, 0.7)
            nb = galsim.Sersic(n=rng.uniform(1, 3), half_light_radius=nb_hlr, trunc=8 * nb_hlr, flux=nb_flux, gsparams=gsp)
            nb = nb.shear(q=rng.uniform(0.4, 1), beta=rng.uniform(0, math.pi) * galsim.radians)
            colour = rng.uniform(0.5, 1.5, size=len(c.bands))
            neighbours.append((nb.shift(*rng.uniform(-0.9 * half, 0.9 * half, size=2)), colour))

        planes = []
        for b, (band, fwhm, sigma) in enumerate(zip(c.bands, c.per_band("psf_fwhm"), c.per_band("sky_sigma"))):
            parts = [bulge.withFlux(flux * bt * colours["bulge"][band] * jitter["bulge"][b]),
                     disk.withFlux(flux * (1 - bt) * (1 - knot_frac) * colours["disk"][band] * jitter["disk"][b])]
            if knots is not None:
                parts.append(knots.withFlux(flux * (1 - bt) * knot_frac * colours["knots"][band] * jitter["knots"][b]))
            gal = galsim.Add(parts).shift(dx, dy)
            scene = galsim.Add([gal] + [nb.withScaledFlux(col[b]) for nb, col in neighbours]) if neighbours else gal
            psf = galsim.Moffat(beta=c.psf_beta, fwhm=fwhm, gsparams=gsp)
            image = galsim.Convolve(scene, psf, gsparams=gsp).drawImage(
                nx=c.image_size, ny=c.image_size, scale=c.pixel_scale, method="auto").array
            if sigma > 0:
                image = image + rng.normal(0.0, sigma, size=image.shape)
            if c.flux_scale != 1.0:
                image = image * c.flux_scale
            planes.append(image.astype(np.float32))
        params = [mag, bt, bulge_hlr, bulge_n, disk_h, incl, beta, knot_frac, dx, dy, len(neighbours)]
        return np.stack(planes), params
