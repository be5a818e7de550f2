"""What a fit starts from: lengths in arcsec, images as float64, the noise, starting values from moments."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["arcsec", "as_single_band", "border_noise", "moments"]


def arcsec(value: Any, name: str) -> float:
    """A length in arcsec from a float (arcsec) or an astropy angle Quantity."""
    if hasattr(value, "unit"):
        import astropy.units as u

        try:
            value = value.to_value(u.arcsec)
        except u.UnitConversionError:
            raise ValueError(f"{name} must be an angle, got unit {value.unit}") from None
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number of arcsec, got {value}")
    return value


def as_single_band(images: Any) -> np.ndarray:
    """Images (N, H, W) float64 from (N, H, W) or (N, 1, H, W), numpy or torch."""
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.ndim == 4:
        if a.shape[1] != 1:
            raise ValueError(f"single-band images expected, got {a.shape[1]} bands (shape {a.shape})")
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"images must be (N, H, W) or (N, 1, H, W), got shape {a.shape}")
    return a.astype(np.float64)


def border_noise(images: np.ndarray, valid: np.ndarray, *, width: int = 2) -> np.ndarray:
    """Noise of each image from its ``width``-pixel border, floored at 1e-3 of its peak.

    1.4826 MAD / sqrt(2) of the differences between neighbouring border
    pixels along the edge: the smooth wings of a galaxy that reach the
    border cancel in the differences and do not inflate the estimate.
    """
    out = np.full(len(images), np.nan)
    for i, (image, ok) in enumerate(zip(images, valid)):
        z = np.where(ok, image, np.nan)
        strips = [z[:width], z[-width:], z[:, :width].T, z[:, -width:].T]  # each (width, length), along the edge
        diffs = np.concatenate([(s[:, 1:] - s[:, :-1]).ravel() for s in strips])
        diffs = diffs[np.isfinite(diffs)]
        if diffs.size < 8:
            continue
        mad = 1.4826 * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2)
        out[i] = max(mad, 1e-3 * np.abs(image[ok]).max())
    return out


def moments(image: np.ndarray, valid: np.ndarray, sigma: float, psf_sigma: float) -> tuple[float, ...]:
    """Starting values (x0, y0, r_e [pixels], n, q, beta, flux) from the image moments.

    Centroid and second moments of the pixels above 2 sigma; the PSF and
    pixel variance are subtracted from the second moments before q and
    beta; r_e is the elliptical radius (that q and beta) enclosing half the
    summed flux, the PSF's half-light radius subtracted in quadrature.
    """
    h, w = image.shape
    ys, xs = np.mgrid[:h, :w]
    xs, ys = xs - (w - 1) / 2, ys - (h - 1) / 2
    z = np.where(valid, image, 0.0)
    weight = np.where(valid & (z > 2 * sigma), z, 0.0)
    f_bright, f_all = weight.sum(), z.sum()
    if np.count_nonzero(weight) < 3 or f_bright <= 0:
        return 0.0, 0.0, 2.0, 2.0, 1.0, 0.0, max(f_all, sigma)
    xc, yc = (weight * xs).sum() / f_bright, (weight * ys).sum() / f_bright
    dx, dy = xs - xc, ys - yc
    var = psf_sigma**2 + 1 / 12
    mxx = (weight * dx * dx).sum() / f_bright - var
    myy = (weight * dy * dy).sum() / f_bright - var
    mxy = (weight * dx * dy).sum() / f_bright
    trace, diff = mxx + myy, math.hypot(mxx - myy, 2 * mxy)
    lam1, lam2 = max((trace + diff) / 2, 0.05), max((trace - diff) / 2, 0.0)
    q = float(np.clip(math.sqrt(max(lam2, 0.01 * lam1) / lam1), 0.1, 1.0))
    beta = 0.5 * math.atan2(2 * mxy, mxx - myy)
    flux = max(f_all, f_bright)
    c, s = math.cos(beta), math.sin(beta)
    xp, yp = dx * c + dy * s, -dx * s + dy * c
    r_ell = np.sqrt(q * xp**2 + yp**2 / q)[valid]
    order = np.argsort(r_ell)
    cumulative = np.cumsum(z[valid][order])
    k = min(int(np.searchsorted(cumulative, flux / 2)), len(order) - 1)
    r_obs = float(r_ell[order][k]) + 0.5
    r_e = math.sqrt(max(r_obs**2 - (1.1774 * psf_sigma) ** 2, 0.25))
    return float(xc), float(yc), r_e, 2.0, q, beta, float(flux)
