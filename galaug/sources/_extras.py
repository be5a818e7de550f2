"""What ingest carries with each image besides its pixels: its ivar, mask and row of the objects table.

Every change ingest makes to an image's pixels (crop, resize, resample,
NaN fill) is made to these too: the maps are cut or resampled the same way
(variances summed with squared weights, flags or-ed over the pixels an
output pixel covers) and the WCS is moved to the new grid.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from galaug.data import objects as obj

__all__ = ["Carried"]


@dataclasses.dataclass
class Carried:
    """One image's inverse variance and mask ((C, H, W) or None) and its objects row ((1,) :data:`objects.ROW`)."""

    ivar: np.ndarray | None
    mask: np.ndarray | None
    row: np.ndarray
    distorted: bool = False  #: its WCS had distortion terms (SIP), dropped
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, extras: Any, tables: obj.ObjectTables, shape: tuple[int, ...]) -> Carried:
        """From a reader's :class:`~galaug.sources.readers.Extras` (or None) for an image of ``shape``.

        Raises ``ValueError`` for maps of another shape, or an id too long to store.
        """
        if extras is None:
            return cls(None, None, obj.empty_rows(1))
        for kind in ("ivar", "mask"):
            value = getattr(extras, kind)
            if value is not None and tuple(value.shape) != tuple(shape):
                raise ValueError(f"its {kind} has shape {tuple(value.shape)}, the image {tuple(shape)}")
        row, distorted = tables.row(extras.identity)
        return cls(extras.ivar, extras.mask, row, distorted, tuple(extras.notes))

    def scale(self, factors: np.ndarray) -> None:
        """As the image's bands were multiplied by ``factors`` (a unit conversion): ivar over their squares."""
        if self.ivar is not None:
            factors = np.asarray(factors, dtype=np.float64)[:, None, None]
            self.ivar = (self.ivar / factors**2).astype(np.float32)

    def crop(self, top: int, left: int, height: int, width: int) -> None:
        """The pixels ``[top:top + height, left:left + width]``, as the image was cropped."""
        window = np.s_[:, top:top + height, left:left + width]
        self.ivar = None if self.ivar is None else self.ivar[window]
        self.mask = None if self.mask is None else self.mask[window]
        if top or left:
            obj.regrid(self.row, ((1.0, float(top)), (1.0, float(left))))

    def fill(self, finite: np.ndarray) -> None:
        """Pixels whose value was NaN or Inf (and was filled in) have an unknown variance: ivar 0."""
        if self.ivar is not None:
            self.ivar = np.where(finite, self.ivar, np.float32(0))

    def resize(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """As the image was resized to ``rows @ image @ cols.T`` (overlap matrices of ingest's ``resample_flux``).

        The new grid covers the old one edge to edge: pixel ``p`` is centred
        at ``(p + 0.5) * s - 0.5`` of the old grid, ``s`` = old size / new size.
        """
        import torch

        from galaug.degrade.resample import overlap_flags, overlap_variance

        ry, rx = torch.from_numpy(np.asarray(rows, np.float64)), torch.from_numpy(np.asarray(cols, np.float64))
        if self.ivar is not None:
            ivar = torch.from_numpy(self.ivar.astype(np.float64))
            variance = overlap_variance(torch.where(ivar > 0, 1 / ivar, math.inf), ry, rx)
            self.ivar = (1 / variance).to(torch.float32).numpy()
        if self.mask is not None:
            self.mask = overlap_flags(torch.from_numpy(self.mask.astype(np.int32)), ry, rx).numpy().astype(np.uint16)
        sy, sx = rows.shape[1] / rows.shape[0], cols.shape[1] / cols.shape[0]
        obj.regrid(self.row, ((sy, 0.5 * sy - 0.5), (sx, 0.5 * sx - 0.5)))

    def resample(self, component: Any, shape: tuple[int, int]) -> None:
        """As the image (of ``shape`` H, W before) was resampled by the ``resample`` degradation ``component``."""
        import torch

        if self.ivar is not None:
            ivar = torch.from_numpy(self.ivar[None].astype(np.float64))
            variance = component.propagate_variance(torch.where(ivar > 0, 1 / ivar, math.inf), None)
            self.ivar = (1 / variance[0]).to(torch.float32).numpy()
        if self.mask is not None:
            self.mask = component.propagate_mask(torch.from_numpy(self.mask[None].astype(np.int32)))[0] \
                .numpy().astype(np.uint16)
        obj.regrid(self.row, component.pixel_grid(*shape))

    def locate(self, tables: obj.ObjectTables, height: int, width: int) -> None:
        """RA/Dec, where the file gave none, of the image's centre through its WCS."""
        row = self.row[0]
        if np.isfinite(row["ra"]) and np.isfinite(row["dec"]):
            return
        wcs = obj.row_wcs(row, tables)
        if wcs is not None:
            ra, dec = wcs.pixel_to_world_values((width - 1) / 2, (height - 1) / 2)
            self.row["ra"], self.row["dec"] = float(ra), float(dec)
