"""Image-quality metrics in torch, batched: MSE, PSNR and SSIM per band and overall.

Every metric of band ``b`` uses a *data range* ``R_b``: the clean
validation images' ``p99.9 - p0.1`` in that band (:func:`robust_range`),
since float galaxy images have no fixed peak value.

- **MSE**: mean squared error in data units, over every pixel of the set
  (per band; overall over every band).
- **PSNR**: ``10 log10(R_b^2 / MSE_b)`` from the MSE of the whole set (not
  an average of per-image values); overall, ``10 log10(1 / mean_b(MSE_b /
  R_b^2))``, the PSNR of the images scaled by their ranges. Identical images
  give :data:`PSNR_CAP` (100 dB) instead of infinity, so that reports stay
  valid JSON.
- **SSIM** (Wang et al. 2004): on images divided by ``R_b`` (so ``L = 1``,
  ``C1 = 0.01^2``, ``C2 = 0.03^2``), local statistics under an 11x11
  Gaussian window of sigma 1.5 (normalised to unit sum), population
  (co)variances, averaged over the positions where the window fits inside
  the image ("valid") and then over images; overall, the mean over bands.
  The same as ``skimage.metrics.structural_similarity(x, y, data_range=R,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` per band.
  Images need at least 11x11 pixels.

Sums are accumulated in float64, so the result does not depend on the
batch size beyond float rounding of the inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["PSNR_CAP", "SSIM_WINDOW", "SSIM_SIGMA", "MetricSums", "gaussian_window", "psnr", "robust_range",
           "ssim"]

#: PSNR (dB) reported when the MSE is zero, or so small that the PSNR would exceed it.
PSNR_CAP = 100.0
#: Side of the SSIM window in pixels, and the standard deviation of its Gaussian.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def robust_range(pixels: np.ndarray) -> np.ndarray:
    """``p99.9 - p0.1`` of (C, P) pixels per band; 1.0 for a band where that is not positive."""
    lo, hi = np.percentile(np.asarray(pixels, dtype=np.float64), [0.1, 99.9], axis=1)
    spread = hi - lo
    return np.where(spread > 0, spread, 1.0)


def psnr(mse: float | np.ndarray, data_range: float | np.ndarray = 1.0) -> float | np.ndarray:
    """``10 log10(data_range^2 / mse)``, capped at :data:`PSNR_CAP` (also for ``mse == 0``)."""
    mse = np.asarray(mse, dtype=np.float64)
    peak = np.asarray(data_range, dtype=np.float64) ** 2
    value = 10 * np.log10(peak / np.maximum(mse, peak * 10 ** (-PSNR_CAP / 10)))  # the floor caps the PSNR
    return float(value) if value.ndim == 0 else value


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, *,
                    dtype: torch.dtype = torch.float64, device: Any = None) -> torch.Tensor:
    """The 1-d Gaussian (size,), sampled at integer offsets from the centre and normalised to unit sum."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: torch.Tensor | Sequence[float] | float = 1.0
         ) -> torch.Tensor:
    """Mean SSIM of each image and band: (B, C) float64.

    Parameters
    ----------
    x, y : torch.Tensor
        (B, C, H, W), H and W at least :data:`SSIM_WINDOW`.
    data_range : float or sequence of float or torch.Tensor
        ``R`` per band (or one for all); the images are divided by it.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    b, c, h, w = x.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}")
    r = torch.as_tensor(data_range, dtype=torch.float64, device=x.device).reshape(-1)
    r = r.expand(c)[None, :, None, None]
    x, y = x.to(torch.float64) / r, y.to(torch.float64) / r
    g = gaussian_window(device=x.device)
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5C, H, W)
    maps = F.conv2d(maps, g.view(1, 1, -1, 1).expand(5 * c, 1, -1, 1), groups=5 * c)  # valid along H
    maps = F.conv2d(maps, g.view(1, 1, 1, -1).expand(5 * c, 1, 1, -1), groups=5 * c)  # valid along W
    mu_x, mu_y, xx, yy, xy = maps.split(c, dim=1)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    c1, c2 = _K1**2, _K2**2
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return value.mean(dim=(2, 3))


class MetricSums:
    """Running sums of squared errors and SSIM over batches, per band; :meth:`result` gives the metrics.

    Parameters
    ----------
    bands : sequence of str
        Band names, for the report.
    data_range : sequence of float
        ``R_b`` per band.
    """

    def __init__(self, bands: Sequence[str], data_range: Sequence[float]) -> None:
        self.bands = tuple(bands)
        self.data_range = np.asarray(data_range, dtype=np.float64)
        if self.data_range.shape != (len(self.bands),):
            raise ValueError(f"one data range per band: {len(self.bands)} bands, {self.data_range.shape} ranges")
        self.sse = np.zeros(len(self.bands))
        self.pixels = np.zeros(len(self.bands))
        self.ssim_sum = np.zeros(len(self.bands))
        self.images = 0

    @torch.no_grad()
    def update(self, estimate: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch (B, C, H, W) of estimates of ``target``."""
        diff = estimate.to(torch.float64) - target.to(torch.float64)
        self.sse += diff.pow(2).sum(dim=(0, 2, 3)).cpu().numpy()
        self.pixels += diff.shape[0] * diff.shape[2] * diff.shape[3]
        r = torch.as_tensor(self.data_range, device=target.device)
        self.ssim_sum += ssim(estimate, target, data_range=r).sum(dim=0).cpu().numpy()
        self.images += diff.shape[0]

    def result(self) -> dict[str, Any]:
        """``{"mse", "psnr", "ssim", "bands": {band: {"mse", "psnr", "ssim"}}}`` (floats)."""
        if self.images == 0:
            raise ValueError("no images were added")
        mse = self.sse / self.pixels
        band_psnr = psnr(mse, self.data_range)
        band_ssim = self.ssim_sum / self.images
        scaled = float(np.mean(mse / self.data_range**2))
        return {
            "mse": float(self.sse.sum() / self.pixels.sum()),
            "psnr": psnr(scaled),
            "ssim": float(band_ssim.mean()),
            "bands": {b: {"mse": float(m), "psnr": float(p), "ssim": float(s)}
                      for b, m, p, s in zip(self.bands, mse, np.atleast_1d(band_psnr), band_ssim)},
        }
