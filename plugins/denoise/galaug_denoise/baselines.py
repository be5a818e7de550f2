"""Classical denoisers reported beside the CNN: Gaussian, Wiener with the known PSF, TV, NL-means, wavelets.

Every baseline restores one band of one image at a time, with scipy or
scikit-image (never a version written here), and has one main parameter:

==========  ==========================================================  =========  ====================
name        what                                                        parameter  unit
==========  ==========================================================  =========  ====================
gaussian    ``scipy.ndimage.gaussian_filter`` (edges reflected)          sigma      pixels
wiener      ``skimage.restoration.wiener`` with the run's PSF kernel    balance    none (linear filter)
tv          ``skimage.restoration.denoise_tv_chambolle``                weight     noise sigmas
nlmeans     ``skimage.restoration.denoise_nl_means`` (5x5 patches,      h          noise sigmas
            13x13 search window, fast mode, ``sigma`` given)
wavelet     ``skimage.restoration.denoise_wavelet``, BayesShrink, soft  sigma      noise sigmas
            thresholds, Daubechies-2, skimage's number of levels        scale
==========  ==========================================================  =========  ====================

**Units.** The images are floats in flux units, not 0..1, and TV, NL-means
and the wavelet thresholds assume a scale. Those three see each band of
each image in *noise units*: ``(x - median(x)) / s`` with ``s`` the noise
standard deviation that ``skimage.restoration.estimate_sigma`` finds in it
(the median absolute deviation of the finest wavelet details; at least
1e-3 of the image's ``p99.9 - p0.1``, and 1 for a constant image), and
the estimate is mapped back by ``y * s + median(x)``. So a TV weight of 1
is one noise sigma whatever the flux unit, and the same weight follows a
stronger noise (the ``noise5x`` test sets). The Gaussian and Wiener
filters are linear and see the data as they are. The Wiener filter is
``wiener(image, psf, balance, clip=False)`` (skimage's Laplacian
regulariser, a periodic convolution) with the PSF of the run's degradation:
the kernels of every step that has them (``psf:gaussian``, ``psf:moffat``,
``psf:kernel``, or a third-party step with a ``kernels(bands, height,
width)`` method), convolved together when there are several, cut to where
all but 1e-6 of the flux lies and to at most the image size.

**Tuning** (:func:`tune`): each parameter is chosen per band, minimising
the MSE in data units over a sample of noisy/clean training pairs, on a
geometric grid (:attr:`Baseline.grid`) and then at the two geometric
midpoints around the best grid value; a choice at either end of the grid
is flagged (``at_edge``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from galaug.errors import ParamError

__all__ = ["Baseline", "BASELINES", "DEFAULT_BASELINES", "NLMEANS_PATCH", "NLMEANS_DISTANCE", "WAVELET",
           "parse_baselines", "noise_units", "psf_kernels", "restore", "tune"]

#: NL-means patch size and search distance (pixels): 5x5 patches, searched within 6 pixels (a 13x13 window).
NLMEANS_PATCH, NLMEANS_DISTANCE = 5, 6
#: The wavelet of the BayesShrink baseline.
WAVELET = "db2"


def _gaussian(image: np.ndarray, sigma: float, psf: np.ndarray | None) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma, mode="reflect")


def _wiener(image: np.ndarray, balance: float, psf: np.ndarray | None) -> np.ndarray:
    from skimage.restoration import wiener

    return wiener(image, psf, balance, clip=False)


def _tv(image: np.ndarray, weight: float, psf: np.ndarray | None) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(image, weight=weight)


def _nlmeans(image: np.ndarray, h: float, psf: np.ndarray | None) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    # noise units: the noise sigma is 1
    return denoise_nl_means(image, patch_size=NLMEANS_PATCH, patch_distance=NLMEANS_DISTANCE, h=h, sigma=1.0,
                            fast_mode=True)


def _wavelet(image: np.ndarray, scale: float, psf: np.ndarray | None) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    # noise units: a threshold of ``scale`` noise sigmas
    return denoise_wavelet(image, sigma=scale, wavelet=WAVELET, mode="soft", method="BayesShrink",
                           rescale_sigma=True)


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A classical denoiser: ``function(image (H, W) float64, value, psf (h, w) or None) -> estimate (H, W)``."""

    name: str
    #: the tuned parameter
    param: str
    #: its unit (see the module's docstring)
    unit: str
    #: the values tried first; the two geometric midpoints around the best are tried next
    grid: tuple[float, ...]
    function: Callable[[np.ndarray, float, np.ndarray | None], np.ndarray]
    #: the image is seen in noise units (see :func:`noise_units`)
    noise_units: bool
    #: needs the degradation's PSF
    needs_psf: bool = False


def _geometric(first: float, ratio: float, n: int) -> tuple[float, ...]:
    return tuple(float(f"{first * ratio**k:.6g}") for k in range(n))


#: Every baseline, in report order.
BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("gaussian", "sigma", "pixels", _geometric(0.25, 2.0, 6), _gaussian, noise_units=False),
    Baseline("wiener", "balance", "", _geometric(1e-5, 10.0, 8), _wiener, noise_units=False, needs_psf=True),
    Baseline("tv", "weight", "noise sigmas", _geometric(0.0625, 2.0, 8), _tv, noise_units=True),
    Baseline("nlmeans", "h", "noise sigmas", _geometric(0.125, 2.0, 6), _nlmeans, noise_units=True),
    Baseline("wavelet", "sigma_scale", "noise sigmas", _geometric(0.25, 2.0, 5), _wavelet, noise_units=True),
)}
#: The baselines evaluated unless others are asked for: all but NL-means, which costs more than the other
#: four together (docs/denoise.md, "Classical baselines").
DEFAULT_BASELINES = ("gaussian", "wiener", "tv", "wavelet")


def parse_baselines(value: str | Sequence[str] | None, *, param: str = "baselines") -> tuple[str, ...] | None:
    """Names of baselines from ``"gaussian,tv"``, ``"all"``, ``"none"`` (or ``""``) or a sequence of names.

    None stays None (the default set). Raises :class:`galaug.errors.ParamError` naming ``param`` for an
    unknown name, before anything runs.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none"):
            return ()
        if text == "all":
            return tuple(BASELINES)
        value = [part.strip() for part in text.split(",")]
    names = tuple(dict.fromkeys(value))
    for name in names:
        if name not in BASELINES:
            raise ParamError(param, "{%s}: unknown baseline {name!r} (known: {known}; or all, none)" % param,
                             name=name, known=", ".join(BASELINES))
    return tuple(n for n in BASELINES if n in names)  # report order


def noise_units(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(normalised, offset, scale)`` of (N, H, W) images: ``normalised = (images - offset) / scale`` per image.

    ``offset`` is each image's median, ``scale`` its noise sigma from
    ``skimage.restoration.estimate_sigma``, at least 1e-3 of its
    ``p99.9 - p0.1`` (1 for a constant image); both (N, 1, 1).
    """
    from skimage.restoration import estimate_sigma

    images = np.asarray(images, dtype=np.float64)
    offset = np.median(images, axis=(1, 2), keepdims=True)
    sigma = np.array([estimate_sigma(x) for x in images]).reshape(-1, 1, 1)
    lo, hi = np.percentile(images, [0.1, 99.9], axis=(1, 2), keepdims=True)
    scale = np.maximum(np.nan_to_num(sigma), 1e-3 * (hi - lo))
    scale = np.where(scale > 0, scale, 1.0)
    return (images - offset) / scale, offset, scale


def psf_kernels(pipeline: Any, bands: int, height: int, width: int) -> np.ndarray | None:
    """The PSF of ``pipeline`` on (bands, height, width) images: (bands, h, w) float64 kernels, or None if none.

    Every step whose component has ``kernels(bands, height, width)`` is a
    PSF; several are convolved together. Each kernel is centred at ``(h //
    2, w // 2)``, odd-sized, cut to where all but 1e-6 of its flux lies and
    to at most the image, and sums to 1.
    """
    import torch
    from scipy.signal import fftconvolve

    from galaug.degrade.psf import crop_to_flux

    if pipeline is None:
        return None
    total = None
    for step in pipeline.steps:
        kernels = getattr(step.component, "kernels", None)
        if not callable(kernels):
            continue
        k = np.asarray(kernels(bands, height, width), dtype=np.float64)
        # odd sizes keep the centre (h // 2, w // 2) a pixel when kernels are convolved
        k = np.pad(k, ((0, 0), (0, 1 - k.shape[1] % 2), (0, 1 - k.shape[2] % 2)))
        total = k if total is None else np.stack([fftconvolve(a, b, mode="full") for a, b in zip(total, k)])
    if total is None:
        return None
    total = crop_to_flux(torch.from_numpy(total)).numpy()
    hy = min(total.shape[1] // 2, (height - 1) // 2)
    hx = min(total.shape[2] // 2, (width - 1) // 2)
    cy, cx = total.shape[1] // 2, total.shape[2] // 2
    total = total[:, cy - hy:cy + hy + 1, cx - hx:cx + hx + 1]
    return total / total.sum(axis=(1, 2), keepdims=True)


def _restore_band(baseline: Baseline, images: np.ndarray, value: float, psf: np.ndarray | None,
                  units: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> np.ndarray:
    """``baseline`` at ``value`` on (N, H, W) images of one band (``units``: their :func:`noise_units`)."""
    if baseline.noise_units:
        normalised, offset, scale = units if units is not None else noise_units(images)
        return np.stack([baseline.function(x, value, psf) for x in normalised]) * scale + offset
    return np.stack([baseline.function(x, value, psf) for x in np.asarray(images, dtype=np.float64)])


def restore(name: str, images: np.ndarray, values: Sequence[float], *, psf: np.ndarray | None = None,
            units: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """Baseline ``name`` on (N, C, H, W) images, band ``c`` with ``values[c]`` (and kernel ``psf[c]``); float64.

    ``units`` (optional) holds :func:`noise_units` of each band of ``images``,
    so that several baselines share them.

    Raises
    ------
    ValueError
        For the Wiener filter without a ``psf``.
    """
    baseline = BASELINES[name]
    if baseline.needs_psf and psf is None:
        raise ValueError(f"the {name} baseline needs the PSF")
    images = np.asarray(images, dtype=np.float64)
    out = np.empty_like(images)
    for c in range(images.shape[1]):
        out[:, c] = _restore_band(baseline, images[:, c], float(values[c]), None if psf is None else psf[c],
                                  None if units is None else units[c])
    return out


def tune(name: str, noisy: np.ndarray, clean: np.ndarray, *, psf: np.ndarray | None = None) -> dict[str, Any]:
    """Choose the parameter of baseline ``name`` per band on (N, C, H, W) noisy/clean pairs, by MSE.

    Each band tries the values of the baseline's grid, then the two
    geometric midpoints around the best, and keeps the one of least MSE.

    Returns
    -------
    dict
        ``param``, ``unit``, ``values`` (one per band, in band order), ``at_edge`` (per band: the choice is
        at or beyond the grid's first or last value, so the best may lie farther out) and ``grid``.
    """
    baseline = BASELINES[name]
    if baseline.needs_psf and psf is None:
        raise ValueError(f"the {name} baseline needs the PSF")
    noisy = np.asarray(noisy, dtype=np.float64)
    clean = np.asarray(clean, dtype=np.float64)
    grid = baseline.grid
    ratio = grid[1] / grid[0]
    values, at_edge = [], []
    for c in range(noisy.shape[1]):
        kernel = None if psf is None else psf[c]
        units = noise_units(noisy[:, c]) if baseline.noise_units else None

        def mse(value: float, c: int = c, kernel: np.ndarray | None = kernel, units: Any = units) -> float:
            estimate = _restore_band(baseline, noisy[:, c], value, kernel, units)
            return float(np.mean((estimate - clean[:, c]) ** 2))

        errors = [mse(v) for v in grid]
        best = int(np.argmin(errors))
        tried = [(errors[best], grid[best])]
        for step in (-0.5, 0.5):
            mid = float(f"{grid[best] * ratio**step:.6g}")
            tried.append((mse(mid), mid))
        values.append(min(tried)[1])
        at_edge.append(values[-1] <= grid[0] or values[-1] >= grid[-1])
    return {"param": baseline.param, "unit": baseline.unit, "values": values, "at_edge": at_edge,
            "grid": list(grid)}
