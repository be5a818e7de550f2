"""Per-band intensity transform: astronomical floats in, a well-scaled range for the networks, and back.

``t = asinh((x - offset) / softening) / norm`` per band, fitted on the
training set: ``offset`` is the median pixel (sky), ``softening`` the robust
noise scale (1.4826 MAD of the pixels, times ``softening_factor``; for
noiseless data where most pixels are identical, 1e-3 of the bright level),
and ``norm`` puts the 99.9th percentile at 1. The inverse maps generated
images back to the training data's units. ``linear`` skips the asinh.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["IntensityTransform"]


class IntensityTransform:
    """Per-band asinh (or linear) stretch; tensors of shape (C,) broadcast over (B, C, H, W)."""

    def __init__(self, offset, softening, norm, *, kind: str = "asinh") -> None:
        if kind not in ("asinh", "linear"):
            raise ValueError(f"unknown stretch {kind!r} (asinh or linear)")
        self.offset = torch.as_tensor(offset, dtype=torch.float32)
        self.softening = torch.as_tensor(softening, dtype=torch.float32)
        self.norm = torch.as_tensor(norm, dtype=torch.float32)
        self.kind = kind

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
        return cls(offset, soft, norm, kind=kind)

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

    def state_dict(self) -> dict:
        return {"offset": self.offset, "softening": self.softening, "norm": self.norm, "kind": self.kind}

    @classmethod
    def from_state_dict(cls, state: dict) -> IntensityTransform:
        return cls(state["offset"], state["softening"], state["norm"], kind=state["kind"])
