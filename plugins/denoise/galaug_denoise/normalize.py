"""Per-band intensity normalisation fitted on the clean training images.

``y = f((x - offset) / softening) / norm`` per band, with

- ``robust`` (default, linear): ``f`` the identity, ``offset`` the median
  pixel, ``softening`` the robust range ``p99.9 - p0.1`` and ``norm`` 1, so
  the bulk of the pixels spans about one unit and the training MSE is a
  fixed multiple of the MSE in data units, band by band;
- ``asinh``: ``f = asinh``, ``softening`` the robust noise scale (1.4826
  times the median absolute deviation; 1e-3 of the bright level for
  noiseless images, whose MAD is about 0) and ``norm = asinh((p99.9 - offset)
  / softening)``, which compresses the bright cores (the idea of
  ``galaug.stretch``); the loss then weights faint structure more.

The statistics come from at most :data:`MAX_PIXELS` pixels per band (all of
them when the sample is smaller, else an evenly strided subset).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

__all__ = ["MAX_PIXELS", "Normalizer", "band_pixels"]

#: Pixels per band the statistics are computed from.
MAX_PIXELS = 1 << 22


def band_pixels(images: np.ndarray, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(C, P) float64 pixels of ``images`` (N, C, H, W) per band, an evenly strided subset if P > ``max_pixels``."""
    x = np.moveaxis(np.asarray(images), 1, 0).reshape(images.shape[1], -1)
    stride = -(-x.shape[1] // max_pixels)
    return x[:, ::stride].astype(np.float64)


class Normalizer(nn.Module):
    """Per-band ``y = f((x - offset) / softening) / norm`` and its inverse; (C,) buffers.

    Parameters
    ----------
    bands : int
    kind : {"robust", "asinh"}
    """

    def __init__(self, bands: int, *, kind: Literal["robust", "asinh"] = "robust") -> None:
        super().__init__()
        if kind not in ("robust", "asinh"):
            raise ValueError(f"unknown normalisation {kind!r} (robust or asinh)")
        self.kind = kind
        self.register_buffer("offset", torch.zeros(bands))
        self.register_buffer("softening", torch.ones(bands))
        self.register_buffer("norm", torch.ones(bands))

    @torch.no_grad()
    def fit(self, images: np.ndarray) -> Normalizer:
        """Fit on clean training images (N, C, H, W); returns ``self``."""
        x = band_pixels(images)
        offset = np.median(x, axis=1)
        lo, hi = np.percentile(x, [0.1, 99.9], axis=1)
        spread = np.abs(x - offset[:, None]).max(axis=1)
        if self.kind == "robust":
            softening = hi - lo
            softening = np.where(softening > 0, softening, np.where(spread > 0, spread, 1.0))
            norm = np.ones_like(offset)
        else:
            top = hi - offset
            top = np.where(top > 0, top, np.where(spread > 0, spread, 1.0))
            mad = 1.4826 * np.median(np.abs(x - offset[:, None]), axis=1)
            softening = np.where(mad > 1e-6 * top, mad, 1e-3 * top)
            norm = np.arcsinh(top / softening)
        for name, value in (("offset", offset), ("softening", softening), ("norm", norm)):
            getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float32))
        return self

    def _band(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t.to(like.dtype)[None, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Data units to normalised units."""
        y = (x - self._band(self.offset, x)) / self._band(self.softening, x)
        if self.kind == "asinh":
            y = torch.asinh(y)
        return y / self._band(self.norm, x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Normalised units back to data units."""
        y = y * self._band(self.norm, y)
        if self.kind == "asinh":
            y = torch.sinh(y)
        return y * self._band(self.softening, y) + self._band(self.offset, y)
