"""Noise: Gaussian, Poisson, and a CCD model (Poisson on signal plus sky, Gaussian read noise).

Sample ``i`` of a batch is drawn with its own ``torch.Generator`` on the
images' device, seeded with ``seeds[i]``, so it depends only on
``(images[i], seeds[i])``: the same seed gives the same noise whatever the
batch, and different seeds give different noise. A generator's stream is
sequential, so on the CPU the samples of a batch are spread over torch's
threads (:func:`_each_sample`), with the same values for any number of them.
(A counter-based stream, numpy's Philox keyed by each sample's seed, was
measured 2x slower per image than torch's generators; benchmarks/degrade.py.) CPU and CUDA generators
produce different streams, so the same seed gives different (equally
valid) noise on the two devices.
"""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor

import torch

from galaug.degrade._common import check_images, check_number, check_per_band, per_band
from galaug.kinds import Degradation

__all__ = ["CCD_GAIN", "GaussianNoise", "PoissonNoise", "CCDNoise"]


def _generators(images: torch.Tensor, seeds: torch.Tensor) -> list[torch.Generator]:
    """One generator per sample on the images' device, seeded with ``seeds[i]``."""
    check_images(images)
    seeds = torch.as_tensor(seeds)
    if seeds.shape != images.shape[:1]:
        raise ValueError(f"seeds must have shape ({images.shape[0]},), got {tuple(seeds.shape)}")
    generators = []
    for seed in seeds.tolist():
        generator = torch.Generator(device=images.device)
        generator.manual_seed(int(seed))
        generators.append(generator)
    return generators


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _each_sample(work, n: int, device: torch.device) -> None:
    """Call ``work(i)`` for every sample ``i < n``: on the CPU in contiguous ranges over torch's threads.

    torch releases the GIL inside each sample's draw, so the threads run in parallel.
    """
    global _POOL
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    if threads < 2 or n < 2:
        for i in range(n):
            work(i)
        return
    if _POOL is None or _POOL[0] != threads:
        if _POOL is not None:
            _POOL[1].shutdown(wait=False)
        _POOL = (threads, ThreadPoolExecutor(threads, thread_name_prefix="galaug-noise"))
    step = -(-n // threads)

    def run(lo: int) -> None:
        for i in range(lo, min(n, lo + step)):
            work(i)

    for future in [_POOL[1].submit(run, lo) for lo in range(0, n, step)]:
        future.result()


def _standard_normal(images: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Unit normal deviates shaped like ``images``; sample ``i`` drawn from ``generators[i]``."""
    noise = torch.empty_like(images)
    _each_sample(lambda i: noise[i].normal_(generator=generators[i]), len(noise), images.device)
    return noise


def _poisson(rates: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Poisson deviates of the given (non-negative) rates; sample ``i`` drawn from ``generators[i]``."""
    out = torch.empty_like(rates)
    _each_sample(lambda i: out[i].copy_(torch.poisson(rates[i], generator=generators[i])), len(out), rates.device)
    return out


def _band_column(values: list[float], like: torch.Tensor) -> torch.Tensor:
    """Per-band values as a (C, 1, 1) tensor on ``like``'s device and dtype."""
    return torch.tensor(values, dtype=like.dtype, device=like.device)[:, None, None]


def _check_factor(factor: float) -> float:
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"the noise factor must be a finite number > 0, got {factor!r}")
    return float(factor)


def _times(value: float | tuple[float, ...], factor: float) -> float | tuple[float, ...]:
    """``value`` (one number or one per band) times ``factor``."""
    return tuple(v * factor for v in value) if isinstance(value, tuple) else value * factor


@dataclasses.dataclass
class GaussianNoiseConfig:
    """Standard deviation of the noise in the images' flux unit (the dataset's): one number or one per band."""

    std: float | tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        self.std = check_per_band("std", self.std, strict=False)


class GaussianNoise(Degradation):
    """Additive Gaussian noise of standard deviation ``std`` (image units, per band allowed)."""

    name = "noise-gaussian"
    Config = GaussianNoiseConfig
    stochastic = True

    def apply(self, images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        check_images(images)
        std = _band_column(per_band("std", self.config.std, images.shape[1]), images)
        return _standard_normal(images, _generators(images, seeds)).mul_(std).add_(images)

    def propagate_variance(self, variance: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The input's variance plus ``std**2``."""
        std = _band_column(per_band("std", self.config.std, images.shape[1]), variance)
        return variance + std * std

    def scaled(self, factor: float) -> GaussianNoise:
        """``std`` (each band's) times ``factor``."""
        factor = _check_factor(factor)
        std = None if self.config.std is None else _times(self.config.std, factor)
        return type(self)(dataclasses.replace(self.config, std=std))


@dataclasses.dataclass
class PoissonNoiseConfig:
    """``gain``: counts (electrons) per unit of the images' data; one number or one per band."""

    gain: float | tuple[float, ...] = 1.0

    def __post_init__(self) -> None:
        self.gain = check_per_band("gain", self.gain)


class PoissonNoise(Degradation):
    """Poisson noise: ``Poisson(max(x, 0) * gain) / gain`` (``gain`` in counts per image unit)."""

    name = "noise-poisson"
    Config = PoissonNoiseConfig
    stochastic = True

    def apply(self, images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        check_images(images)
        gain = _band_column(per_band("gain", self.config.gain, images.shape[1]), images)
        return _poisson(images.clamp(min=0) * gain, _generators(images, seeds)).div_(gain)

    def propagate_variance(self, variance: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The input's variance plus the Poisson variance of its values, ``max(x, 0) / gain``."""
        gain = _band_column(per_band("gain", self.config.gain, images.shape[1]), variance)
        return variance + images.to(variance.dtype).clamp(min=0) / gain

    def scaled(self, factor: float) -> PoissonNoise:
        """``gain`` (each band's) over ``factor**2``: the noise of ``x`` is ``sqrt(x / gain)``."""
        factor = _check_factor(factor)
        return type(self)(dataclasses.replace(self.config, gain=_times(self.config.gain, 1 / factor**2)))


#: What noise:ccd's gain is, in its error when it is missing.
CCD_GAIN = ("gain is required: electrons per unit of the images' data (e-/ADU for counts, e-/nJy for images in nJy; "
            "0 switches Poisson noise off)")


@dataclasses.dataclass
class CCDNoiseConfig:
    """GalSim's ``CCDNoise`` parameters, in the unit of the images' data (ADU for counts).

    ``gain`` (required: no default could suit both counts and fluxes) in
    electrons per data unit (0 switches Poisson noise off and makes
    ``read_noise`` a data unit), ``sky_level`` in data units per pixel
    (already subtracted from the image), ``read_noise`` in e- per pixel.
    """

    sky_level: float = 0.0
    gain: float | None = None
    read_noise: float = 0.0

    def __post_init__(self) -> None:
        if self.gain is None:
            raise ValueError(CCD_GAIN)
        self.sky_level = check_number("sky_level", self.sky_level, strict=False)
        self.gain = check_number("gain", self.gain, strict=False)
        self.read_noise = check_number("read_noise", self.read_noise, strict=False)


class CCDNoise(Degradation):
    """CCD noise as GalSim's ``CCDNoise``: Poisson on signal + sky (e-), Gaussian read noise.

    With image ``x`` in data units (ADU for counts, nJy, ...), sky ``s``
    (data units per pixel), gain ``g`` (e- per data unit) and read noise
    ``r`` (e-)::

        out = Poisson(max((x + s) * g, 0)) / g + Normal(0, r / g) - s     (g > 0)
        out = x + Normal(0, r)                                            (g = 0)

    so a pixel's variance is ``(x + s) / g + (r / g)**2`` data units squared.
    """

    name = "noise-ccd"
    Config = CCDNoiseConfig
    stochastic = True

    def variance(self, level: float = 0.0) -> float:
        """Variance in data units squared of a pixel of value ``level`` (GalSim's ``getVariance()`` at 0)."""
        c = self.config
        if c.gain > 0:
            return max(level + c.sky_level, 0.0) / c.gain + (c.read_noise / c.gain) ** 2
        return c.read_noise**2

    def propagate_variance(self, variance: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The input's variance plus :meth:`variance` at each pixel's value."""
        c = self.config
        if c.gain > 0:
            x = images.to(variance.dtype)
            return variance + ((x + c.sky_level) * c.gain).clamp(min=0) / c.gain**2 + (c.read_noise / c.gain) ** 2
        return variance + c.read_noise**2

    def scaled(self, factor: float) -> CCDNoise:
        """``read_noise`` times ``factor`` and ``sky_level`` times ``factor**2``.

        The sky's and the read noise's standard deviations grow ``factor``
        times; the Poisson noise of the signal itself is unchanged.
        """
        factor = _check_factor(factor)
        c = self.config
        return type(self)(dataclasses.replace(c, read_noise=c.read_noise * factor, sky_level=c.sky_level * factor**2))

    def apply(self, images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        sky, gain, read_noise = self.config.sky_level, self.config.gain, self.config.read_noise
        generators = _generators(images, seeds)
        out = images.clone()
        if gain > 0:
            # electrons of signal + sky, Poisson-sampled, back to ADU, sky subtracted again
            out = _poisson(((images + sky) * gain).clamp(min=0), generators).div_(gain).sub_(sky)
        sigma = read_noise / gain if gain > 0 else read_noise
        if sigma > 0:
            out = _standard_normal(images, generators).mul_(sigma).add_(out)
        return out
