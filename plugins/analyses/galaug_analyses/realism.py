"""The ``realism`` analysis: do generated images look like real ones?

``galaug analyze realism GENERATED.zarr HELDOUT.zarr [TRAIN.zarr] -o OUT``
measures four things on every set and compares each set with the real
held-out set by a 1-D Wasserstein distance, divided by the spread of the
held-out values so that distances of different quantities can be read side
by side:

- morphology (statmorph) of one band, after the same PSF and noise are
  added to every set, as in the study;
- the azimuthally averaged power spectrum of each image, in a few
  frequency bands;
- g - i colours of bulge- and disk-dominated galaxies (Gini-M20 bulge
  statistic), when the datasets have bands named g and i;
- pixel values per band.

The real training set, when given, is compared with the held-out set in the
same way: two samples of the same real distribution, it is the floor that a
generated set cannot be expected to beat. See ``docs/realism.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

from galaug import ConfigError, GalaugError, open_dataset
from galaug.degrade.seeds import derive_seeds
from galaug.errors import require
from galaug.kinds import Analysis
from galaug.progress import progress
from galaug.viz import axis_label, pyplot, role_colour, role_label

from ._common import check_alike

__all__ = ["RealismConfig", "Realism", "STATISTICS", "bulge_statistic", "power_spectrum", "scaled_distance"]

#: Morphological statistics compared, and the statmorph attribute each is read from.
STATISTICS: dict[str, str] = {
    "asymmetry": "asymmetry",
    "smoothness": "smoothness",
    "concentration": "concentration",
    "gini": "gini",
    "m20": "m20",
    "rhalf": "rhalf_ellip",
    "sersic_n": "sersic_n",
    "orientation": "orientation_asymmetry",
    "ellipticity": "ellipticity_asymmetry",
}
#: The unit of each statistic that has one (statmorph measures lengths in pixels, angles in radians).
_STATISTIC_UNITS = {"rhalf": "pixels", "orientation": "rad"}
#: What statmorph returns for a statistic it could not measure.
_INVALID = -99.0
#: Roles of the inputs, in the order they are given.
ROLES = ("generated", "heldout", "train")


@dataclasses.dataclass
class RealismConfig:
    """Options of ``galaug analyze realism GENERATED.zarr HELDOUT.zarr [TRAIN.zarr]``."""

    #: images read per set at most (the first n rows)
    n: int = 500
    #: band whose morphology and power spectrum are measured (empty: the first)
    band: str = ""
    #: degradation pipeline applied to every set before morphology ("" for none)
    degrade: str = "psf:gaussian(fwhm=1.5)"
    #: Gaussian noise added after ``degrade``: this fraction of the held-out images' median peak, per band (0: none)
    noise_fraction: float = 0.02
    #: segmentation threshold, in background standard deviations
    detect_sigma: float = 2.0
    #: smallest segment, in connected pixels
    min_pixels: int = 5
    #: statmorph fits whose flag or Sersic flag is above this are failures (0 good, 1 suspect, 2 bad, 4 catastrophic)
    max_flag: int = 1
    #: frequency bands the power spectrum is split into
    power_bands: int = 4
    #: pixel values drawn per set and band for the pixel histograms
    pixel_samples: int = 100_000
    #: bins of the histograms in the figures
    bins: int = 30
    #: processes measuring morphology (statmorph takes 0.2 to 0.4 s per 32x32 image)
    workers: int = 1

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError(f"n must be at least 2, got {self.n}")
        if not (self.noise_fraction >= 0 and math.isfinite(self.noise_fraction)):
            raise ValueError(f"noise_fraction must be >= 0, got {self.noise_fraction}")
        if not (self.detect_sigma > 0 and math.isfinite(self.detect_sigma)):
            raise ValueError(f"detect_sigma must be positive, got {self.detect_sigma}")
        if self.min_pixels < 1:
            raise ValueError(f"min_pixels must be at least 1, got {self.min_pixels}")
        if not 0 <= self.max_flag <= 4:
            raise ValueError(f"max_flag must be between 0 and 4, got {self.max_flag}")
        if self.power_bands < 1:
            raise ValueError(f"power_bands must be at least 1, got {self.power_bands}")
        if self.pixel_samples < 2:
            raise ValueError(f"pixel_samples must be at least 2, got {self.pixel_samples}")
        if self.bins < 2:
            raise ValueError(f"bins must be at least 2, got {self.bins}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")


# -- measures -----------------------------------------------------------------------


def scaled_distance(values: np.ndarray, reference: np.ndarray) -> float | None:
    """Wasserstein-1 distance between two samples over the standard deviation of ``reference``.

    Non-finite values are dropped. None when either sample has fewer than two
    values or ``reference`` has no spread.
    """
    values = np.asarray(values, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    values, reference = values[np.isfinite(values)], reference[np.isfinite(reference)]
    if values.size < 2 or reference.size < 2:
        return None
    spread = float(np.std(reference))
    if not spread > 0:
        return None
    return float(wasserstein_distance(values, reference) / spread)


def bulge_statistic(gini: np.ndarray, m20: np.ndarray) -> np.ndarray:
    """Gini-M20 bulge statistic F = -0.693 M20 + 4.95 G - 3.96 (Snyder et al. 2015); F > 0 is bulge-dominated."""
    return -0.693 * np.asarray(m20) + 4.95 * np.asarray(gini) - 3.96


def power_spectrum(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthally averaged power spectra of (n, H, W) images, normalised by each image's total flux squared.

    ``|FFT(image)|^2 / (sum of image)^2`` is averaged over rings of integer
    radius k = 1 .. min(H, W) // 2 (in frequency pixels of the smaller side),
    so the zero frequency would be 1 and the spectrum measures the shape of
    the light, not its amount.

    Returns
    -------
    frequency : ndarray (K,)
        Ring radii in cycles per pixel, ``k / min(H, W)``.
    power : ndarray (n, K)
        NaN for an image whose total flux is not positive.
    """
    n, h, w = images.shape
    members, frequency = _rings(h, w)
    images = images.astype(np.float64)
    flux = images.sum(axis=(1, 2))
    power = np.abs(np.fft.fft2(images)) ** 2  # (n, H, W)
    with np.errstate(divide="ignore", invalid="ignore"):
        power = power.reshape(n, -1) @ members / members.sum(axis=0) / flux[:, None] ** 2
    power[~(flux > 0)] = np.nan
    return frequency, power


def _rings(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Ring membership (H*W, K) of each frequency of an H x W FFT, and the ring radii in cycles per pixel."""
    side = min(h, w)
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    ring = np.rint(np.hypot(fy, fx) * side).astype(np.int64).ravel()
    radii = np.arange(1, side // 2 + 1)
    return (ring[:, None] == radii[None, :]).astype(np.float64), radii / side


def _background(image: np.ndarray, *, detect_sigma: float, min_pixels: int) -> tuple[float, float]:
    """Sky level and noise of ``image``: 3-sigma clipped median and std of the pixels off the sources.

    A galaxy can fill much of a small stamp, so the clipped statistics of all
    pixels are re-estimated twice with the detected sources (grown by two
    pixels) masked, as long as 50 pixels are left.
    """
    from astropy.stats import sigma_clipped_stats
    from photutils.segmentation import detect_sources
    from scipy.ndimage import binary_dilation

    _, sky, sigma = sigma_clipped_stats(image, sigma=3.0, maxiters=5)
    for _ in range(2):
        segments = detect_sources(image - sky, detect_sigma * sigma, min_pixels) if sigma > 0 else None
        if segments is None:
            break
        mask = binary_dilation(segments.data > 0, iterations=2)
        if np.count_nonzero(~mask) < 50:
            break
        _, sky, sigma = sigma_clipped_stats(image, mask=mask, sigma=3.0, maxiters=5)
    return float(sky), float(sigma)


@dataclasses.dataclass
class _Morphology:
    """Statmorph results of one set: values of the images that were fitted, and why the others were not."""

    values: dict[str, np.ndarray]  # statistic -> (n_used,)
    colour: np.ndarray  # (n_used,) g - i in magnitudes (NaN where a flux is not positive); empty without g and i
    failed: Counter


def _morphology(images: np.ndarray, band: int, colour_bands: tuple[int, int] | None,
                config: RealismConfig, *, desc: str) -> _Morphology:
    """Statmorph on band ``band`` of degraded (n, C, H, W) images, one source per image.

    Each image has its sky (:func:`_background`) subtracted; the source is
    the segment (photutils ``detect_sources`` at ``detect_sigma`` times the
    background noise) under the central pixel, else the largest; other
    segments are masked; the weight map is the background noise. With
    ``colour_bands`` (g, i), the sky-subtracted fluxes of both inside the
    source's segment give its g - i colour. With ``config.workers`` > 1 the
    images are measured in that many processes (same results, in order).
    """
    n = len(images)
    rows: list[list[float]] = []
    colours: list[float] = []
    failed: Counter = Counter()
    measure = functools.partial(_measure, band=band, colour_bands=colour_bands, config=config)
    with progress(total=n, desc=desc) as bar, contextlib.ExitStack() as stack:
        if config.workers > 1 and n > 1:
            import concurrent.futures
            import multiprocessing

            pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(
                config.workers, mp_context=multiprocessing.get_context("spawn")))
            results = pool.map(measure, images, chunksize=max(1, min(16, n // (4 * config.workers))))
        else:
            results = map(measure, images)
        for why, row, colour in results:
            bar.update(1)
            if why is not None:
                failed[why] += 1
                continue
            rows.append(row)
            if colour_bands is not None:
                colours.append(colour)
    table = np.asarray(rows, dtype=np.float64).reshape(-1, len(STATISTICS))
    values = {name: table[:, k] for k, name in enumerate(STATISTICS)}
    return _Morphology(values, np.asarray(colours, dtype=np.float64), failed)


def _measure(stack: np.ndarray, *, band: int, colour_bands: tuple[int, int] | None,
             config: RealismConfig) -> tuple[str | None, list[float] | None, float]:
    """(why it failed or None, the statistics, the g - i colour) of one (C, H, W) image."""
    statmorph = require("statmorph", "the realism analysis", "pip install statmorph")
    detect_sources = require("photutils.segmentation", "the realism analysis", "pip install photutils").detect_sources

    _, h, w = stack.shape
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # statmorph and photutils warn about every difficult fit
        image = stack[band].astype(np.float64)
        sky, sigma = _background(image, detect_sigma=config.detect_sigma, min_pixels=config.min_pixels)
        image -= sky
        sigma = max(sigma, 1e-6 * float(np.max(np.abs(image))))
        if not (sigma > 0 and np.all(np.isfinite(image))):
            return "blank", None, math.nan
        segments = detect_sources(image, config.detect_sigma * sigma, config.min_pixels)
        if segments is None:
            return "no_source", None, math.nan
        label = int(segments.data[h // 2, w // 2]) or int(np.argmax(np.bincount(segments.data.ravel())[1:]) + 1)
        segmap = (segments.data == label).astype(np.int32)
        mask = (segments.data > 0) & (segments.data != label)
        morph = statmorph.source_morphology(image, segmap, mask=mask, weightmap=np.full_like(image, sigma))[0]
        if morph.flag > config.max_flag:
            return "flag", None, math.nan
        if morph.flag_sersic > config.max_flag:
            return "sersic_flag", None, math.nan
        row = [float(getattr(morph, attr)) for attr in STATISTICS.values()]
        if not all(math.isfinite(v) and v != _INVALID for v in row):
            return "invalid", None, math.nan
        colour = math.nan
        if colour_bands is not None:
            g, i_ = (_flux_inside(stack[b], segmap.astype(bool), config) for b in colour_bands)
            colour = -2.5 * math.log10(g / i_) if g > 0 and i_ > 0 else math.nan
        return None, row, colour


def _flux_inside(image: np.ndarray, inside: np.ndarray, config: RealismConfig) -> float:
    """Sky-subtracted flux of ``image`` over the pixels where ``inside`` is true."""
    image = image.astype(np.float64)
    sky, _ = _background(image, detect_sigma=config.detect_sigma, min_pixels=config.min_pixels)
    return float(np.sum(image[inside] - sky))


@dataclasses.dataclass
class _Set:
    """Everything measured on one input."""

    role: str
    path: Path
    n_read: int
    morphology: _Morphology
    power: np.ndarray  # (n, K) normalised power spectra of band ``band``, NaN for images with no positive flux
    pixels: np.ndarray  # (C, m) pixel values drawn from the stored images


# -- the analysis -------------------------------------------------------------------


class Realism(Analysis):
    """Morphology (statmorph), power spectra, colours and pixel values: generated vs real."""

    name = "realism"
    Config = RealismConfig

    def run(self, inputs: list[Path], out_dir: Path, *, seed: int) -> dict[str, Any]:
        cfg = self.config
        if not 2 <= len(inputs) <= 3:
            raise GalaugError(f"realism takes GENERATED HELDOUT [TRAIN] (2 or 3 datasets), got {len(inputs)}")
        datasets = [open_dataset(p) for p in inputs]
        check_alike(dict(zip(("generated", "held-out", "training"), datasets)), analysis="realism", minimum=2)
        bands = datasets[0].bands
        if cfg.band and cfg.band not in bands:
            raise ConfigError(f"band {cfg.band!r} is not one of the datasets' bands ({', '.join(bands)})")
        band = bands.index(cfg.band) if cfg.band else 0
        colour_bands = (bands.index("g"), bands.index("i")) if {"g", "i"} <= set(bands) else None
        frequency = _rings(*datasets[0].image_shape[1:])[1]
        frequency_bands = _frequency_bands(len(frequency), cfg.power_bands)

        images = [ds.read(0, cfg.n, fields=["images"])["images"] for ds in datasets]
        pipeline, noise_std = _pipeline(cfg, images[1], seed)
        sets: list[_Set] = []
        measured: dict[Path, _Set] = {}  # a dataset given twice is measured once: the seeds are the same
        for role, ds, stored in zip(ROLES, datasets, images):
            key = ds.path.resolve()
            if key not in measured:
                degraded = _degrade(pipeline, stored, seed)
                morphology = _morphology(degraded, band, colour_bands, cfg, desc=f"statmorph {role}")
                measured[key] = _Set(role, ds.path, len(stored), morphology, power_spectrum(stored[:, band])[1],
                                     _draw_pixels(stored, cfg.pixel_samples, seed))
            sets.append(dataclasses.replace(measured[key], role=role, path=ds.path))

        if colour_bands is not None:
            colours = _compare_colours(sets)
        else:
            colours = {"skipped": f"no bands named g and i (bands: {', '.join(bands)})"}
        results: dict[str, Any] = {
            "band": bands[band],
            "degrade": pipeline.spec if pipeline is not None else "",
            "noise_std": {b: s for b, s in zip(bands, noise_std)},
            "sets": {s.role: str(s.path) for s in sets},
            "n": {s.role: _counts(s) for s in sets},
            "morphology": _compare_morphology(sets),
            "power_spectrum": _compare_power(sets, frequency, frequency_bands),
            "colours": colours,
            "pixels": _compare_pixels(sets, bands),
        }
        results["summary"] = {section: results[section]["mean_distance"]
                              for section in ("morphology", "power_spectrum", "colours", "pixels")
                              if "mean_distance" in results[section]}
        results["table"] = _table(results)
        (out_dir / "table.md").write_text(results["table"])
        results["figures"] = _plot(sets, results, frequency, bands, cfg.bins, out_dir,
                                   flux_unit=datasets[1].flux_unit)
        results["captions"] = {name: text for name, text in _CAPTIONS.items() if name in results["figures"]}
        return results


def _pipeline(cfg: RealismConfig, heldout: np.ndarray, seed: int):
    """The pipeline applied to every set: ``degrade`` plus noise at ``noise_fraction`` of the held-out peak.

    Returns the pipeline (None when there is nothing to apply) and the added
    noise standard deviation per band.
    """
    from galaug.degrade import Pipeline, parse_pipeline
    from galaug.degrade.noise import GaussianNoise, GaussianNoiseConfig

    bands = heldout.shape[1]
    degrade = parse_pipeline(cfg.degrade) if cfg.degrade.strip() else None
    noise = [0.0] * bands
    if cfg.noise_fraction <= 0:
        return degrade, noise
    blurred = _degrade(degrade, heldout, seed)
    peaks = np.median(blurred.max(axis=(2, 3)), axis=0)  # (C,) typical peak of each band
    noise = [float(f"{cfg.noise_fraction * abs(p):.6g}") for p in peaks]
    steps = (degrade.steps if degrade is not None else ()) + (GaussianNoise(GaussianNoiseConfig(std=tuple(noise))),)
    return Pipeline(steps), noise


def _degrade(pipeline, images: np.ndarray, seed: int, *, batch: int = 256) -> np.ndarray:
    """``images`` through ``pipeline``; row ``r`` gets the seed ``derive_seeds(seed, r)`` in every set."""
    import torch

    if pipeline is None:
        return images
    seeds = derive_seeds(seed, np.arange(len(images)))
    out = [pipeline.apply(torch.from_numpy(images[s:s + batch]), torch.from_numpy(seeds[s:s + batch])).numpy()
           for s in range(0, len(images), batch)]
    return np.concatenate(out)


def _draw_pixels(images: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """Up to ``samples`` pixel values per band, (C, m), drawn without replacement with ``seed``.

    The same positions in every set of the same size; non-finite values are
    dropped by :func:`scaled_distance`.
    """
    flat = images.transpose(1, 0, 2, 3).reshape(images.shape[1], -1)
    rng = np.random.default_rng(seed)
    if flat.shape[1] > samples:
        flat = flat[:, np.sort(rng.choice(flat.shape[1], samples, replace=False))]
    return flat.astype(np.float64)


# -- comparisons --------------------------------------------------------------------


def _counts(s: _Set) -> dict[str, Any]:
    failed = dict(sorted(s.morphology.failed.items()))
    used = len(s.morphology.values["gini"])
    return {"read": s.n_read, "used": used, "failed": s.n_read - used, "failed_by_reason": failed,
            "power_spectrum_used": int(np.count_nonzero(np.all(np.isfinite(s.power), axis=1)))}


def _pair(sets: list[_Set], values) -> dict[str, float | None]:
    """Distance of the generated set (and of the training set: the floor) from the held-out set."""
    reference = values(sets[1])
    return {"generated": scaled_distance(values(sets[0]), reference),
            "floor": scaled_distance(values(sets[2]), reference) if len(sets) > 2 else None}


def _mean_distance(entries: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Mean over the entries of the generated and floor distances (those that could be computed)."""
    out = {}
    for key in ("generated", "floor"):
        found = [e[key] for e in entries if e[key] is not None]
        out[key] = float(np.mean(found)) if found else None
    return out


def _medians(sets: list[_Set], values) -> dict[str, float | None]:
    out = {}
    for s in sets:
        v = np.asarray(values(s), dtype=np.float64)
        v = v[np.isfinite(v)]
        out[s.role] = float(np.median(v)) if v.size else None
    return out


def _compare_morphology(sets: list[_Set]) -> dict[str, Any]:
    stats = {}
    for name in STATISTICS:
        stats[name] = {**_pair(sets, lambda s, name=name: s.morphology.values[name]),
                       "median": _medians(sets, lambda s, name=name: s.morphology.values[name])}
    return {"statmorph_attributes": dict(STATISTICS), "statistics": stats,
            "mean_distance": _mean_distance(list(stats.values()))}


def _frequency_bands(n_rings: int, n_bands: int) -> list[np.ndarray]:
    """Ring indices 0 .. n_rings - 1 split into ``n_bands`` contiguous groups of (nearly) equal size."""
    if n_bands > n_rings:
        raise ConfigError(f"power_bands is {n_bands} but the images have only {n_rings} frequencies; "
                          f"use --set power_bands={n_rings} or fewer")
    return np.array_split(np.arange(n_rings), n_bands)


def _band_log_power(s: _Set, rings: np.ndarray) -> np.ndarray:
    """log10 of the mean normalised power over ``rings`` of each image."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.mean(s.power[:, rings], axis=1))


def _compare_power(sets: list[_Set], frequency: np.ndarray, frequency_bands: list[np.ndarray]) -> dict[str, Any]:
    bands = []
    for rings in frequency_bands:
        bands.append({"frequency_min": float(frequency[rings[0]]), "frequency_max": float(frequency[rings[-1]]),
                      **_pair(sets, lambda s, rings=rings: _band_log_power(s, rings)),
                      "median_log10_power": _medians(sets, lambda s, rings=rings: _band_log_power(s, rings))})
    return {"normalisation": "|FFT|^2 / (total flux)^2, azimuthal mean over rings; distances of log10 power",
            "frequency_unit": "cycles / pixel", "bands": bands, "mean_distance": _mean_distance(bands)}


def _colour_of(s: _Set, bulge: bool) -> np.ndarray:
    values = s.morphology.values
    f = bulge_statistic(values["gini"], values["m20"])
    return s.morphology.colour[f > 0] if bulge else s.morphology.colour[f <= 0]


def _compare_colours(sets: list[_Set]) -> dict[str, Any]:
    groups = {}
    for kind, bulge in (("early", True), ("late", False)):
        groups[kind] = {**_pair(sets, lambda s, bulge=bulge: _colour_of(s, bulge)),
                        "median": _medians(sets, lambda s, bulge=bulge: _colour_of(s, bulge)),
                        "n": {s.role: int(np.count_nonzero(np.isfinite(_colour_of(s, bulge)))) for s in sets}}
    return {"colour": "g - i (magnitudes, fluxes inside the source's segment)",
            "split": "F(G, M20) = -0.693 M20 + 4.95 G - 3.96 > 0: early (bulge-dominated), else late",
            **groups, "mean_distance": _mean_distance(list(groups.values()))}


def _compare_pixels(sets: list[_Set], bands: tuple[str, ...]) -> dict[str, Any]:
    per_band = {b: _pair(sets, lambda s, k=k: s.pixels[k]) for k, b in enumerate(bands)}
    return {"bands": per_band, "mean_distance": _mean_distance(list(per_band.values()))}


# -- report ---------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _table(results: dict[str, Any]) -> str:
    """Markdown table: each distance of the generated set next to the floor (training set vs held-out)."""
    rows = [(f"morphology: {name}", d) for name, d in results["morphology"]["statistics"].items()]
    rows.append(("morphology: mean", results["morphology"]["mean_distance"]))
    for b in results["power_spectrum"]["bands"]:
        rows.append((f"power: {b['frequency_min']:.3f}-{b['frequency_max']:.3f} cycles/px", b))
    rows.append(("power: mean", results["power_spectrum"]["mean_distance"]))
    colours = results["colours"]
    if "skipped" not in colours:
        rows += [("colour g-i: early", colours["early"]), ("colour g-i: late", colours["late"])]
    rows += [(f"pixels: {band}", d) for band, d in results["pixels"]["bands"].items()]
    rows.append(("pixels: mean", results["pixels"]["mean_distance"]))
    lines = ["| quantity | generated vs held-out | train vs held-out (floor) |", "|---|---:|---:|"]
    lines += [f"| {name} | {_fmt(d['generated'])} | {_fmt(d['floor'])} |" for name, d in rows]
    if "skipped" in colours:
        lines.append(f"\ncolours skipped: {colours['skipped']}")
    return "\n".join(lines) + "\n"


#: Captions of the figures (``galaug report`` shows them under each figure).
_CAPTIONS = {
    "morphology.png": "statmorph statistics after the same PSF and noise, per set; d: distance of the generated "
                      "set from the held-out set in held-out standard deviations, floor: the same for the training set",
    "power_spectrum.png": "Azimuthally averaged power spectra normalised by the flux squared (median and 16-84% "
                          "per set); dotted lines: edges of the frequency bands",
    "pixels.png": "Pixel values per band (log density)",
    "colours.png": "g - i colours of bulge-dominated (early) and disk-dominated (late) galaxies, split by the "
                   "Gini-M20 bulge statistic",
}


def _hist(ax, sets: list[_Set], values, bins: int, *, tails: float = 0.0) -> None:
    """Overlaid density histograms of ``values(set)`` on shared bins.

    The bins span the pooled values without the ``tails`` percent at each end.
    """
    data = [np.asarray(values(s), dtype=np.float64) for s in sets]
    data = [d[np.isfinite(d)] for d in data]
    pooled = np.concatenate(data)
    if pooled.size == 0:
        return
    lo, hi = np.percentile(pooled, [tails, 100 - tails])
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    for s, d in zip(sets, data):
        if d.size:  # a set with no values here keeps its colour in every other panel
            ax.hist(d, bins=edges, histtype="step", density=True, label=role_label(s.role), color=role_colour(s.role))


def _title(name: str, pair: dict[str, float | None]) -> str:
    floor = f" (floor {_fmt(pair['floor'])})" if pair["floor"] is not None else ""
    return f"{name}  d={_fmt(pair['generated'])}{floor}"


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _plot(sets: list[_Set], results: dict[str, Any], frequency: np.ndarray, bands: tuple[str, ...],
          bins: int, out_dir: Path, *, flux_unit: str | None = None) -> list[str]:
    plt = pyplot()
    figures = []
    flux = flux_unit or "data units"

    fig, axes = plt.subplots(3, 3, figsize=(9, 7.5))
    for ax, name in zip(axes.flat, STATISTICS):
        _hist(ax, sets, lambda s: s.morphology.values[name], bins)
        ax.set_title(_title(name, results["morphology"]["statistics"][name]), fontsize=8)
        unit = _STATISTIC_UNITS.get(name)
        ax.set_xlabel(axis_label(name, unit), fontsize=8)
        ax.set_ylabel(axis_label("density", f"1 / {unit}" if unit else None), fontsize=8)
    _legend(axes.flat[0])
    fig.suptitle(f"morphology, band {results['band']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "morphology.png", dpi=80)
    plt.close(fig)
    figures.append("morphology.png")

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for s in sets:
        with np.errstate(divide="ignore"):
            lp = np.log10(s.power[np.all(s.power > 0, axis=1)])
        if len(lp):
            lo, mid, hi = np.percentile(lp, [16, 50, 84], axis=0)
            ax.plot(frequency, mid, label=role_label(s.role), color=role_colour(s.role))
            ax.fill_between(frequency, lo, hi, color=role_colour(s.role), alpha=0.2)
    for b in results["power_spectrum"]["bands"][1:]:
        ax.axvline(b["frequency_min"], color="0.6", lw=0.6, ls=":")
    ax.set_xlabel(axis_label("frequency", "cycles / pixel"))
    ax.set_ylabel("log10 (power / flux²)")  # a ratio of the same units: none
    ax.set_title(f"power spectrum, band {results['band']} (median, 16-84%)", fontsize=9)
    _legend(ax)
    fig.tight_layout()
    fig.savefig(out_dir / "power_spectrum.png", dpi=80)
    plt.close(fig)
    figures.append("power_spectrum.png")

    fig, axes = plt.subplots(1, len(bands), figsize=(3 * len(bands), 2.8), squeeze=False)
    for k, (band, ax) in enumerate(zip(bands, axes[0])):
        _hist(ax, sets, lambda s: s.pixels[k], bins, tails=0.1)
        ax.set_yscale("log")
        ax.set_title(_title(band, results["pixels"]["bands"][band]), fontsize=8)
        ax.set_xlabel(axis_label("pixel value", flux), fontsize=8)
        ax.set_ylabel(axis_label("density", f"1 / {flux}"), fontsize=8)
    _legend(axes[0][0])
    fig.tight_layout()
    fig.savefig(out_dir / "pixels.png", dpi=80)
    plt.close(fig)
    figures.append("pixels.png")

    if "skipped" not in results["colours"]:
        fig, axes = plt.subplots(1, 2, figsize=(6.5, 2.8))
        for ax, (kind, bulge) in zip(axes, (("early", True), ("late", False))):
            _hist(ax, sets, lambda s: _colour_of(s, bulge), bins)
            ax.set_title(_title(f"{kind} types", results["colours"][kind]), fontsize=8)
            ax.set_xlabel(axis_label("g - i", "mag"))
            ax.set_ylabel(axis_label("density", "1 / mag"))
        _legend(axes[0])
        fig.tight_layout()
        fig.savefig(out_dir / "colours.png", dpi=80)
        plt.close(fig)
        figures.append("colours.png")
    return figures
