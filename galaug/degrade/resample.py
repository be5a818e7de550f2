"""Resampling to a coarser (or finer) pixel grid by exact pixel-area overlap.

Both axes are resampled with an overlap matrix ``O`` (new pixel ``i`` by
old pixel ``j``: the length of ``[j, j + 1]`` inside the new pixel's
interval, in old pixels). The new grid is centred on the image. With
``keep_size`` the coarse image is put back on the original grid, so its
size stays the same while its resolution drops; either way the flux (the
sum of the pixel values) is conserved.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from galaug.degrade._common import check_images, in_pixels
from galaug.degrade.units import check_length
from galaug.errors import ConfigError
from galaug.kinds import Degradation

__all__ = ["MIN_SCALE", "Resample", "overlap_matrix"]

#: The smallest ``scale``: pixels at most 16 times finer than the input's.
MIN_SCALE = 1 / 16


def overlap_matrix(n_old: int, scale: float, n_new: int) -> torch.Tensor:
    """(n_new, n_old) float64 overlap lengths of a grid of ``n_new`` pixels of ``scale`` old pixels.

    The new grid is centred on the old one: new pixel ``i`` spans
    ``[start + i * scale, start + (i + 1) * scale]`` with
    ``start = (n_old - n_new * scale) / 2``.
    """
    start = (n_old - n_new * scale) / 2.0
    lo = start + scale * torch.arange(n_new, dtype=torch.float64)[:, None]
    j = torch.arange(n_old, dtype=torch.float64)[None, :]
    return (torch.minimum(lo + scale, j + 1) - torch.maximum(lo, j)).clamp(min=0)


def _resampling_matrix(n_old: int, scale: float, keep_size: bool) -> torch.Tensor:
    """The matrix ``M`` with ``out = M @ image`` along one axis."""
    if keep_size:
        # coarse pixels cover the whole image (the outer ones may stick out); each averages the
        # flux density over its part inside the image, and is spread back by area
        overlap = overlap_matrix(n_old, scale, max(1, math.ceil(n_old / scale - 1e-9)))
        average = overlap / overlap.sum(dim=1, keepdim=True)
        return overlap.T @ average
    n_new = math.floor(n_old / scale + 1e-9)
    if n_new < 1:
        raise ConfigError(f"scale {scale:g} leaves no whole pixel of an image {n_old} pixels wide")
    return overlap_matrix(n_old, scale, n_new)


@dataclasses.dataclass
class ResampleConfig:
    """``scale``: the new pixel size, in old pixels (2 halves the resolution) or as an angle (``"0.4arcsec"``,
    converted with the images' pixel scale by :meth:`galaug.degrade.Pipeline.in_pixels`); ``keep_size``:
    back on the old grid."""

    scale: float | str | None = None
    keep_size: bool = True

    def __post_init__(self) -> None:
        self.scale = check_length("scale", self.scale, minimum=MIN_SCALE, strict=False)
        if not isinstance(self.keep_size, bool):
            raise ValueError(f"keep_size must be true or false, got {self.keep_size!r}")


class Resample(Degradation):
    """Resample to pixels ``scale`` times larger by area, conserving flux; ``keep_size`` keeps H x W.

    With ``keep_size=True`` (the default) the image is averaged over pixels
    ``scale`` times larger and spread back by area onto the original grid:
    the size and the pixel scale stay, the resolution drops. With
    ``keep_size=False`` the output has ``floor(H / scale)`` by
    ``floor(W / scale)`` pixels, each holding the flux of the area it covers
    (centred on the image), and :meth:`pixel_scale_factor` is ``scale``.
    """

    name = "resample"
    Config = ResampleConfig
    lengths = ("scale",)

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self._matrices: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def pixel_scale_factor(self) -> float:
        return 1.0 if self.config.keep_size else in_pixels("scale", self.config.scale)

    def apply(self, images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        check_images(images)
        height, width = images.shape[-2:]
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        key = (height, width, images.device, dtype)
        if key not in self._matrices:
            scale, keep = in_pixels("scale", self.config.scale), self.config.keep_size
            ry = _resampling_matrix(height, scale, keep).to(device=images.device, dtype=dtype)
            rx = _resampling_matrix(width, scale, keep).to(device=images.device, dtype=dtype)
            if len(self._matrices) >= 8:
                self._matrices.pop(next(iter(self._matrices)))
            self._matrices[key] = (ry, rx)
        ry, rx = self._matrices[key]
        # out[b, c] = ry @ image[b, c] @ rx.T
        out = torch.matmul(torch.matmul(ry, images.to(dtype)), rx.T)
        return out.to(images.dtype)

    # -- what happens to a dataset's WCS, ivar and mask (galaug degrade) ------------------------------------
    def _pair(self, height: int, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The matrices of :meth:`apply` for images of ``height`` x ``width``, in float64 on ``like``'s device."""
        scale, keep = in_pixels("scale", self.config.scale), self.config.keep_size
        return (_resampling_matrix(height, scale, keep).to(like.device),
                _resampling_matrix(width, scale, keep).to(like.device))

    def pixel_grid(self, height: int, width: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """The same grid with ``keep_size``; else pixels ``scale`` times larger, the new grid centred on the old."""
        if self.config.keep_size:
            return (1.0, 0.0), (1.0, 0.0)
        scale = in_pixels("scale", self.config.scale)

        def axis(n_old: int) -> tuple[float, float]:
            n_new = math.floor(n_old / scale + 1e-9)
            start = (n_old - n_new * scale) / 2.0  # left edge of the new grid, in old pixels
            return scale, start + 0.5 * scale - 0.5  # centre of new pixel 0, in old pixel coordinates

        return axis(height), axis(width)

    def propagate_variance(self, variance: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Each output pixel's variance: the input's summed with squared weights (pixels taken as independent);
        infinite (unknown) where any input pixel it takes from has an unknown variance."""
        return overlap_variance(variance, *self._pair(*variance.shape[-2:], variance))

    def propagate_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Unchanged with ``keep_size`` (as for PSFs, flags are not spread); else each output pixel has the
        flags of every input pixel it overlaps (bitwise or)."""
        if self.config.keep_size:
            return mask
        return overlap_flags(mask, *self._pair(*mask.shape[-2:], mask))


def overlap_variance(variance: torch.Tensor, ry: torch.Tensor, rx: torch.Tensor) -> torch.Tensor:
    """The variance of ``ry @ image @ rx.T``: the input's summed with squared weights (pixels taken as independent);
    infinite (unknown) where any input pixel an output pixel takes from has an unknown (non-finite) variance."""
    ry, rx = ry.to(torch.float64), rx.to(torch.float64)
    unknown = ~torch.isfinite(variance)
    known = torch.where(unknown, torch.zeros_like(variance), variance).to(torch.float64)
    out = torch.matmul(torch.matmul(ry * ry, known), (rx * rx).T)
    reach = torch.matmul(torch.matmul((ry != 0).double(), unknown.double()), (rx != 0).double().T)
    return torch.where(reach > 0, math.inf, out).to(variance.dtype)


def overlap_flags(mask: torch.Tensor, ry: torch.Tensor, rx: torch.Tensor) -> torch.Tensor:
    """The uint16 flags of ``ry @ image @ rx.T`` (int32 tensors): each output pixel has the bitwise or of the
    flags of every input pixel it takes from."""
    ry, rx = (ry != 0).double(), (rx != 0).double()
    out = torch.zeros((*mask.shape[:-2], ry.shape[0], rx.shape[0]), dtype=torch.int32, device=mask.device)
    for bit in range(16):  # one bit at a time
        plane = ((mask >> bit) & 1).double()
        if plane.any():
            out |= (torch.matmul(torch.matmul(ry, plane), rx.T) > 0).to(torch.int32) << bit
    return out
