"""The targets: total flux and half-light radius, measured on the clean image itself.

Nothing is read from stored parameters, so any dataset (simulated, ingested,
generated, mixed) can be trained on. For an image (C, H, W), summed over
its bands:

- ``flux``: the sum of all pixels (the flux inside the stamp), in the
  dataset's flux unit;
- ``radius``: the radius in pixels of the circle about the light-weighted
  centroid (weights: the pixels clipped at zero) that encloses half of
  ``flux``. Each pixel is split into ``SUBPIXELS`` x ``SUBPIXELS`` equal
  sub-pixels placed at their centres; the enclosed flux is accumulated in
  order of distance and the radius interpolated linearly where it crosses
  half the total (from 0 at the centre).

The model predicts ``log10`` of both (:data:`TARGETS`, in that order). An
image whose flux is not positive, or whose pixels are not finite, has no
valid targets; it is left out of the loss and of the metrics.
Both are unchanged by flips and 90-degree rotations of a square image.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TARGETS", "SUBPIXELS", "measure"]

#: What the model predicts, in column order: log10 half-light radius [pixels], log10 total flux [flux unit].
TARGETS = ("radius", "flux")
#: Sub-pixels per pixel side used to measure the half-light radius.
SUBPIXELS = 4
#: Sub-pixel values handled at once (bounds memory for large images).
_MAX_POINTS = 1 << 22


def measure(images: np.ndarray, *, subpixels: int = SUBPIXELS) -> tuple[np.ndarray, np.ndarray]:
    """``log10`` half-light radius (pixels) and total flux of each image.

    Parameters
    ----------
    images : np.ndarray
        (N, C, H, W) clean images; the bands are summed.
    subpixels : int
        Sub-pixels per pixel side for the radius.

    Returns
    -------
    targets : np.ndarray
        (N, 2) float64, columns as :data:`TARGETS`; NaN where not valid.
    valid : np.ndarray
        (N,) bool: finite pixels, positive flux, a positive radius.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {x.shape}")
    n, _, h, w = x.shape
    out = np.full((n, 2), np.nan)
    per = max(1, _MAX_POINTS // (h * w * subpixels**2))
    for a in range(0, n, per):
        out[a:a + per] = _measure(x[a:a + per].sum(axis=1), subpixels)
    valid = np.isfinite(out).all(axis=1)
    return out, valid


def _measure(img: np.ndarray, k: int) -> np.ndarray:
    """(g, 2) log10 radius and flux of band-summed images (g, H, W); NaN where undefined."""
    g, h, w = img.shape
    finite = np.isfinite(img).all(axis=(1, 2))
    img = np.where(finite[:, None, None], img, 0.0)
    flux = img.sum(axis=(1, 2))
    weight = np.clip(img, 0.0, None)
    wsum = weight.sum(axis=(1, 2))
    yy, xx = np.mgrid[:h, :w]  # pixel centres
    safe = np.where(wsum > 0, wsum, 1.0)
    yc = (weight * yy).sum(axis=(1, 2)) / safe
    xc = (weight * xx).sum(axis=(1, 2)) / safe
    ys = (np.arange(h * k) + 0.5) / k - 0.5  # sub-pixel centres in pixel coordinates
    xs = (np.arange(w * k) + 0.5) / k - 0.5
    dist = np.hypot(ys[None, :, None] - yc[:, None, None], xs[None, None, :] - xc[:, None, None]).reshape(g, -1)
    sub = np.repeat(np.repeat(img, k, axis=1), k, axis=2).reshape(g, -1) / k**2  # (g, H*k*W*k)
    order = np.argsort(dist, axis=1, kind="stable")
    dist = np.take_along_axis(dist, order, axis=1)
    cum = np.cumsum(np.take_along_axis(sub, order, axis=1), axis=1)
    half = flux / 2
    reached = cum >= half[:, None]
    i = reached.argmax(axis=1)
    rows = np.arange(g)
    d1, c1 = dist[rows, i], cum[rows, i]
    d0 = np.where(i > 0, dist[rows, i - 1], 0.0)
    c0 = np.where(i > 0, cum[rows, i - 1], 0.0)
    ok = finite & (flux > 0) & (wsum > 0) & reached.any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = d0 + (half - c0) / (c1 - c0) * (d1 - d0)  # c0 < half <= c1 where ok
        ok &= radius > 0
        return np.where(ok[:, None], np.log10(np.stack([np.where(ok, radius, 1.0), np.where(ok, flux, 1.0)], 1)),
                        np.nan)
