"""Per-band intensity transform for generators: astronomical floats in, a well-scaled range for networks, and back.

``t = asinh((x - offset) / softening) / norm`` per band, fitted on the
training set: ``offset`` is the median pixel (sky), ``softening`` the robust
noise scale (1.4826 MAD of the pixels, times ``softening_factor``; for
noiseless data where most pixels are identical, 1e-3 of the bright level),
and ``norm`` puts the 99.9th percentile at 1. The inverse maps generated
images back to the training data's units. ``linear`` skips the asinh.

Two more per-band numbers are fitted (absent in checkpoints made before
they existed, where they do nothing):

- ``low``, ``high``: the stretched training data's extremes; :meth:`bound`
  softly keeps generated values inside them, so that the exponential
  inverse (``sinh``) cannot turn a small overshoot of the network into a hot
  pixel far outside the data's range;
- ``sky_sigma``: the pixel noise of the sky in data units (see
  :func:`_sky_sigma`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["IntensityTransform"]


class IntensityTransform:
    """Per-band asinh (or linear) stretch; tensors of shape (C,) broadcast over (B, C, H, W)."""

    def __init__(self, offset, softening, norm, *, kind: str = "asinh", low=None, high=None,
                 sky_sigma=None) -> None:
        if kind not in ("asinh", "linear"):
            raise ValueError(f"unknown stretch {kind!r} (asinh or linear)")
        self.offset = torch.as_tensor(offset, dtype=torch.float32)
        self.softening = torch.as_tensor(softening, dtype=torch.float32)
        self.norm = torch.as_tensor(norm, dtype=torch.float32)
        self.kind = kind
        as_tensor = (lambda v: None if v is None else torch.as_tensor(v, dtype=torch.float32))
        self.low, self.high, self.sky_sigma = as_tensor(low), as_tensor(high), as_tensor(sky_sigma)

    @classmethod
    def fit(cls, images: np.ndarray, *, kind: str = "asinh", softening_factor: float = 1.0) -> IntensityTransform:
        """Fit on a sample of training images (N, C, H, W)."""
        x = np.moveaxis(np.asarray(images, dtype=np.float64), 1, 0).reshape(images.shape[1], -1)
        offset = np.median(x, axis=1)
        mad = 1.4826 * np.median(np.abs(x - offset[:, None]), axis=1)
        top = np.percentile(x, 99.9, axis=1) - offset
        top = np.where(top > 0, top, np.abs(x - offset[:, None]).max(axis=1) + 1e-12)
        soft = np.where(mad > 1e-6 * top, mad, 1e-3 * top) * softening_factor
        if kind == "linear":
            norm = top / soft
        else:
            norm = np.arcsinh(top / soft)
        stretched = cls(offset, soft, norm, kind=kind).forward(torch.as_tensor(images, dtype=torch.float32))
        low, high = stretched.amin(dim=(0, 2, 3)), stretched.amax(dim=(0, 2, 3))
        return cls(offset, soft, norm, kind=kind, low=low, high=high, sky_sigma=_sky_sigma(images))

    @classmethod
    def fit_dataset(cls, ds, *, samples: int, seed: int, kind: str = "asinh",
                    softening_factor: float = 1.0) -> IntensityTransform:
        """Fit on ``samples`` contiguous images of a dataset from a seeded start (one read).

        Images with NaN or Inf pixels are refused with one line that names the
        first row and how to clean the data.
        """
        from galaug.errors import GalaugError

        n = min(len(ds), samples)
        start = int(np.random.default_rng(seed).integers(0, len(ds) - n + 1))
        images = ds.read(start, start + n, fields=["images"])["images"]
        bad = ~np.isfinite(images).all(axis=(1, 2, 3))
        if bad.any():
            raise GalaugError(f"{ds.path}: {int(bad.sum())} image(s) with NaN/Inf pixels (first at row "
                              f"{start + int(np.flatnonzero(bad)[0])}); clean the data (galaug ingest --on-bad) first")
        return cls.fit(images, kind=kind, softening_factor=softening_factor)

    def _shape(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t.to(like.device, like.dtype)[None, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x - self._shape(self.offset, x)) / self._shape(self.softening, x)
        if self.kind == "asinh":
            y = torch.asinh(y)
        return y / self._shape(self.norm, x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y = y * self._shape(self.norm, y)
        if self.kind == "asinh":
            y = torch.sinh(y)
        return y * self._shape(self.softening, y) + self._shape(self.offset, y)

    def bound(self, y: torch.Tensor, *, sharpness: float = 20.0) -> torch.Tensor:
        """Stretched values softly kept within ``[low, high]`` (unchanged well inside; no-op without them).

        ``high - softplus(high - (low + softplus(y - low)))`` with softplus of
        ``sharpness``: smooth, with gradients everywhere, within about
        ``log(2) / sharpness`` of the identity in the interior.
        """
        if self.low is None or self.high is None:
            return y
        low, high = self._shape(self.low, y), self._shape(self.high, y)
        y = low + F.softplus(y - low, beta=sharpness)
        return high - F.softplus(high - y, beta=sharpness)

    def state_dict(self) -> dict:
        state = {"offset": self.offset, "softening": self.softening, "norm": self.norm, "kind": self.kind}
        for key in ("low", "high", "sky_sigma"):
            if getattr(self, key) is not None:
                state[key] = getattr(self, key)
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> IntensityTransform:
        return cls(state["offset"], state["softening"], state["norm"], kind=state["kind"], low=state.get("low"),
                   high=state.get("high"), sky_sigma=state.get("sky_sigma"))


def _sky_sigma(images: np.ndarray) -> np.ndarray:
    """Per-band pixel noise of the sky, in data units.

    The robust spread (1.4826 MAD) of the second differences along rows,
    ``x[j] - 2 x[j + 1] + x[j + 2]`` (variance 6 sigma^2 for white noise, and
    blind to smooth light that is locally linear), over sqrt(6), where all
    three pixels lie in the sky: the fainter half of the band's
    5x5-smoothed image, so galaxy light does not inflate it (selecting on
    the smoothed image, not the pixel, does not bias the noise itself).
    """
    from scipy.ndimage import uniform_filter

    x = np.asarray(images, dtype=np.float64)
    out = []
    for band in np.moveaxis(x, 1, 0):  # (N, H, W)
        smooth = uniform_filter(band, size=(1, 5, 5), mode="nearest")
        sky = smooth < np.median(smooth)
        triples = sky[:, :, 2:] & sky[:, :, 1:-1] & sky[:, :, :-2]
        second = (band[:, :, 2:] - 2 * band[:, :, 1:-1] + band[:, :, :-2])[triples]
        out.append(1.4826 * np.median(np.abs(second - np.median(second))) / np.sqrt(6) if second.size else 0.0)
    return np.asarray(out)
