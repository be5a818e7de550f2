"""The ``objects`` table: which object each image is (source file, HDU, id, RA/Dec, the stamp's WCS).

In memory a block of the table is a numpy structured array of :data:`ROW`
(one row per image); on disk it is one Zarr array per column under the
group ``objects/`` (chunked like the other small members) plus the table
of source file names, ``objects/sources``. See docs/dataset-format.md.

The WCS of a row is its linear celestial part: ``CRVAL``, ``CRPIX`` and
the ``CD`` matrix as numbers, with the projection (``CTYPE``, ``CUNIT``,
``RADESYS``, ``EQUINOX``) in a small table of frames. Distortion terms
(SIP, TPV, lookup tables) are not kept.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ID_BYTES", "ROW", "COLUMNS", "WCS_NUMBERS", "FRAME_KEYS", "Identity", "ObjectTables", "empty_rows",
           "to_columns", "from_columns", "remap", "celestial_wcs", "has_distortion", "wcs_numbers", "row_wcs",
           "wcs_cards", "regrid", "drop_wcs", "counts", "encode_names", "decode_names"]

#: Bytes of an object id (UTF-8); a longer id is an error where it is read.
ID_BYTES = 64
#: The numbers of a row's WCS, in this order.
WCS_NUMBERS = ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2")
#: What a frame (an entry of the table of frames) holds.
FRAME_KEYS = ("CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "RADESYS", "EQUINOX")
#: A row in memory: ``source``, ``hdu`` and ``frame`` index the tables (-1: unknown); NaN: unknown.
ROW = np.dtype([("id", f"S{ID_BYTES}"), ("source", "<i4"), ("hdu", "<i4"), ("ra", "<f8"), ("dec", "<f8"),
                ("wcs", "<f8", (len(WCS_NUMBERS),)), ("frame", "<i4")])
#: The stored columns: name -> (dtype, shape of one row). ``id`` is stored as bytes (uint8), zero-padded.
COLUMNS = {"id": ("uint8", (ID_BYTES,)), "source": ("int32", ()), "hdu": ("int32", ()), "ra": ("float64", ()),
           "dec": ("float64", ()), "wcs": ("float64", (len(WCS_NUMBERS),)), "frame": ("int32", ())}


def empty_rows(n: int) -> np.ndarray:
    """``n`` rows that know nothing: empty id, no source, HDU or frame, NaN coordinates and WCS."""
    rows = np.zeros(n, dtype=ROW)
    rows["source"] = rows["hdu"] = rows["frame"] = -1
    rows["ra"] = rows["dec"] = np.nan
    rows["wcs"] = np.nan
    return rows


def to_columns(rows: np.ndarray) -> dict[str, np.ndarray]:
    """The stored columns of ``rows`` (keys of :data:`COLUMNS`)."""
    rows = np.ascontiguousarray(rows, dtype=ROW)
    out = {name: np.ascontiguousarray(rows[name]) for name in COLUMNS if name != "id"}
    out["id"] = np.ascontiguousarray(rows["id"]).view(np.uint8).reshape(len(rows), ID_BYTES)
    return out


def from_columns(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Rows (:data:`ROW`) from the stored columns."""
    n = len(columns["source"])
    rows = np.empty(n, dtype=ROW)
    rows["id"] = np.ascontiguousarray(columns["id"], dtype=np.uint8).view(f"S{ID_BYTES}").reshape(n)
    for name in COLUMNS:
        if name != "id":
            rows[name] = columns[name]
    return rows


@dataclasses.dataclass
class Identity:
    """What a reader knows of one image, before it becomes a row: all optional.

    ``wcs`` is a 2-d celestial ``astropy.wcs.WCS`` of the image's pixel grid.
    """

    id: str = ""
    source: str = ""
    hdu: str = ""
    ra: float = math.nan
    dec: float = math.nan
    wcs: Any = None


class ObjectTables:
    """The tables the rows index: source file names, HDU names, WCS frames.

    Rows store indices into these; :meth:`row` turns an :class:`Identity`
    into a row, adding names and frames as they come.
    """

    def __init__(self, sources: Sequence[str] = (), hdus: Sequence[str] = (),
                 frames: Sequence[dict[str, Any]] = ()) -> None:
        self.sources: list[str] = [str(s) for s in sources]
        self.hdus: list[str] = [str(h) for h in hdus]
        self.frames: list[dict[str, Any]] = [dict(f) for f in frames]
        self._index: dict[tuple[str, Any], int] = {}
        for table, values in (("sources", self.sources), ("hdus", self.hdus)):
            for i, v in enumerate(values):
                self._index.setdefault((table, v), i)
        for i, f in enumerate(self.frames):
            self._index.setdefault(("frames", _frame_key(f)), i)

    def __repr__(self) -> str:
        return f"ObjectTables({len(self.sources)} sources, {len(self.hdus)} hdus, {len(self.frames)} frames)"

    def index(self, table: str, value: Any) -> int:
        """The row of ``value`` in ``table`` (``sources``, ``hdus`` or ``frames``), added if new."""
        key = (table, _frame_key(value) if table == "frames" else str(value))
        if key not in self._index:
            values = getattr(self, table)
            self._index[key] = len(values)
            values.append(dict(value) if table == "frames" else str(value))
        return self._index[key]

    def row(self, identity: Identity | None) -> tuple[np.ndarray, bool]:
        """One row (:data:`ROW`) for ``identity``, and whether its WCS had distortion terms that were dropped."""
        row = empty_rows(1)
        if identity is None:
            return row, False
        encoded = identity.id.encode("utf-8")
        if len(encoded) > ID_BYTES:
            raise ValueError(f"object id {identity.id[:80]!r} is longer than {ID_BYTES} bytes")
        row["id"] = encoded
        if identity.source:
            row["source"] = self.index("sources", identity.source)
        if identity.hdu:
            row["hdu"] = self.index("hdus", identity.hdu)
        row["ra"], row["dec"] = identity.ra, identity.dec
        distorted = False
        if identity.wcs is not None:
            frame, numbers, distorted = wcs_numbers(identity.wcs)
            row["frame"] = self.index("frames", frame)
            row["wcs"] = numbers
        return row, distorted

    def merged(self, other: ObjectTables) -> tuple[ObjectTables, dict[str, np.ndarray]]:
        """These tables with ``other``'s appended (duplicates once), and the maps of ``other``'s indices."""
        out = ObjectTables(self.sources, self.hdus, self.frames)
        maps = {table: np.array([out.index(table, v) for v in getattr(other, table)], dtype=np.int32)
                for table in ("sources", "hdus", "frames")}
        return out, maps

    def attrs(self) -> dict[str, Any]:
        """What the dataset's attributes hold (the sources go to the ``objects/sources`` array)."""
        return {"hdus": list(self.hdus), "frames": [dict(f) for f in self.frames]}


def _frame_key(frame: dict[str, Any]) -> tuple:
    return tuple(frame.get(k) for k in FRAME_KEYS)


def remap(rows: np.ndarray, maps: dict[str, np.ndarray]) -> np.ndarray:
    """``rows`` with their source, HDU and frame indices mapped by ``maps`` (:meth:`ObjectTables.merged`)."""
    rows = rows.copy()
    for column, table in (("source", "sources"), ("hdu", "hdus"), ("frame", "frames")):
        known = rows[column] >= 0
        rows[column][known] = maps[table][rows[column][known]]
    return rows


# -- WCS ---------------------------------------------------------------------------------------------------

def celestial_wcs(header: Any) -> Any:
    """The celestial part of ``header``'s WCS (an ``astropy.wcs.WCS``), None when it has none or it is unusable."""
    if header is None or "CTYPE1" not in header:
        return None
    from astropy.wcs import WCS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FITSFixedWarning and astropy's notes on odd headers
            wcs = WCS(header)
            return wcs.celestial if wcs.has_celestial and wcs.celestial.naxis == 2 else None
    except (ValueError, KeyError, MemoryError):
        return None


def has_distortion(wcs: Any) -> bool:
    """Whether ``wcs`` has terms beyond the linear projection (SIP, TPV, lookup tables)."""
    ctype = " ".join(wcs.wcs.ctype)
    return bool(wcs.sip is not None or wcs.cpdis1 is not None or wcs.cpdis2 is not None
                or wcs.det2im1 is not None or wcs.det2im2 is not None or "-TPV" in ctype)


def wcs_numbers(wcs: Any) -> tuple[dict[str, Any], np.ndarray, bool]:
    """The frame, the numbers (:data:`WCS_NUMBERS`) and whether distortion terms were dropped, of a 2-d WCS."""
    w = wcs.wcs
    w.set()  # wcslib's defaults filled in (RADESYS ICRS for a celestial frame without one), as on any use
    ctype = [str(c).replace("-SIP", "").replace("-TPV", "-TAN") for c in w.ctype]
    equinox = float(w.equinox)
    frame = {"CTYPE1": ctype[0], "CTYPE2": ctype[1], "CUNIT1": str(w.cunit[0]), "CUNIT2": str(w.cunit[1]),
             "RADESYS": str(w.radesys) or None, "EQUINOX": equinox if math.isfinite(equinox) else None}
    cd = np.asarray(wcs.pixel_scale_matrix, dtype=np.float64)  # CDELT and PC folded into CD
    numbers = np.array([*w.crval, *w.crpix, cd[0, 0], cd[0, 1], cd[1, 0], cd[1, 1]], dtype=np.float64)
    return frame, numbers, has_distortion(wcs)


def row_wcs(row: np.void | np.ndarray, tables: ObjectTables) -> Any:
    """The ``astropy.wcs.WCS`` of one row, or None when it has none."""
    frame = int(row["frame"])
    numbers = np.asarray(row["wcs"], dtype=np.float64)
    if frame < 0 or not np.isfinite(numbers).all():
        return None
    from astropy.wcs import WCS

    f = tables.frames[frame]
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = [f["CTYPE1"], f["CTYPE2"]]
    wcs.wcs.cunit = [f["CUNIT1"], f["CUNIT2"]]
    wcs.wcs.crval = numbers[0:2]
    wcs.wcs.crpix = numbers[2:4]
    wcs.wcs.cd = numbers[4:8].reshape(2, 2)
    if f.get("RADESYS"):
        wcs.wcs.radesys = f["RADESYS"]
    if f.get("EQUINOX") is not None:
        wcs.wcs.equinox = f["EQUINOX"]
    wcs.wcs.set()
    return wcs


def wcs_cards(row: np.void | np.ndarray, tables: ObjectTables) -> list[tuple[str, Any, str]]:
    """FITS cards ``(keyword, value, comment)`` of a row's WCS (``CD`` matrix), empty when it has none."""
    frame = int(row["frame"])
    numbers = np.asarray(row["wcs"], dtype=np.float64)
    if frame < 0 or not np.isfinite(numbers).all():
        return []
    f = tables.frames[frame]
    cards = [(k, f[k], "") for k in ("CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2")]
    cards += [(k, float(v), "") for k, v in zip(WCS_NUMBERS, numbers)]
    if f.get("RADESYS"):
        cards.append(("RADESYS", f["RADESYS"], ""))
    if f.get("EQUINOX") is not None:
        cards.append(("EQUINOX", float(f["EQUINOX"]), ""))
    return cards


def regrid(rows: np.ndarray, grid: tuple[tuple[float, float], tuple[float, float]]) -> np.ndarray:
    """``rows`` with their WCS moved to a new pixel grid, in place; returns ``rows``.

    ``grid`` is ``((scale_y, offset_y), (scale_x, offset_x))``: pixel ``p``
    (0-based) of the new grid is at ``offset + scale * p`` of the old one
    along each axis (a crop: scale 1, offset its first row or column; a
    resampling to pixels ``s`` times larger: scale ``s``).
    """
    (sy, oy), (sx, ox) = grid
    wcs = rows["wcs"]
    # FITS pixel P = p + 1: P_old - CRPIX_old = s (P_new - CRPIX_new) with CRPIX_new = (CRPIX_old - 1 - o) / s + 1
    wcs[..., 2] = (wcs[..., 2] - 1 - ox) / sx + 1
    wcs[..., 3] = (wcs[..., 3] - 1 - oy) / sy + 1
    wcs[..., 4] *= sx  # CD1_1, CD2_1: along pixel axis 1 (x)
    wcs[..., 6] *= sx
    wcs[..., 5] *= sy  # CD1_2, CD2_2: along pixel axis 2 (y)
    wcs[..., 7] *= sy
    rows["wcs"] = wcs
    return rows


def drop_wcs(rows: np.ndarray) -> np.ndarray:
    """``rows`` without their WCS, in place; returns ``rows``."""
    rows["wcs"] = np.nan
    rows["frame"] = -1
    return rows


def counts(rows: np.ndarray) -> dict[str, int]:
    """How many of ``rows`` have an id, coordinates, a WCS and a source file."""
    return {"ids": int(np.count_nonzero(rows["id"] != b"")),
            "coordinates": int(np.count_nonzero(np.isfinite(rows["ra"]) & np.isfinite(rows["dec"]))),
            "wcs": int(np.count_nonzero(rows["frame"] >= 0)),
            "sources": int(np.count_nonzero(rows["source"] >= 0))}


def encode_names(names: Sequence[str]) -> np.ndarray:
    """(S, W) uint8: each name as UTF-8, zero-padded to the longest (W >= 1)."""
    encoded = [n.encode("utf-8") for n in names]
    width = max([1, *map(len, encoded)])
    out = np.zeros((len(encoded), width), dtype=np.uint8)
    for i, e in enumerate(encoded):
        out[i, :len(e)] = np.frombuffer(e, dtype=np.uint8)
    return out


def decode_names(array: np.ndarray) -> list[str]:
    """The names of :func:`encode_names`."""
    return [bytes(row).rstrip(b"\0").decode("utf-8", errors="replace") for row in np.asarray(array, dtype=np.uint8)]
