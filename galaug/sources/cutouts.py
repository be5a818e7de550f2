"""Stamps cut from frames at the positions of a catalogue: ``galaug ingest FRAME.fits OUT --cutouts cat.csv``.

A catalogue is a CSV file with a header row: ``ra,dec`` (degrees, placed
on each frame through its celestial WCS) or ``x,y`` (0-based pixel
coordinates of the first frame, numpy's and astropy's ``Cutout2D``
convention: the centre of the first pixel is 0), and optionally ``id``.
Frames are FITS images read by the ``fits`` reader (its band names, units
and ``hdu`` option apply); several frames, one per band, are cut at the
same sky position through their own WCS, so they need not share a pixel
grid, only a pixel scale. Stamps keep the catalogue's order; an object
whose stamp would reach past a frame's edge is skipped and counted.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from galaug.errors import GalaugError
from galaug.sources.readers import FileUnits

__all__ = ["Catalogue", "Frame", "read_catalogue", "load_frames", "check_positions", "cut"]

#: Column names accepted for each role, compared case-insensitively.
_COLUMNS = {"id": ("id", "objid", "object_id", "name"), "ra": ("ra", "ra_deg", "alpha"),
            "dec": ("dec", "dec_deg", "delta"), "x": ("x", "xcentroid", "x_pix"), "y": ("y", "ycentroid", "y_pix")}


@dataclasses.dataclass
class Catalogue:
    """Positions to cut at: ``kind`` ``"sky"`` (``a``, ``b`` = RA, Dec in degrees) or ``"pixel"`` (x, y)."""

    path: Path
    ids: list[str]
    kind: str
    a: np.ndarray
    b: np.ndarray


@dataclasses.dataclass
class Frame:
    """One frame: its image (C, H, W), band names, units and celestial WCS (None when it has none)."""

    path: Path
    image: np.ndarray
    bands: tuple[str, ...] | None
    units: FileUnits
    wcs: Any
    #: The frame's error and quality maps and HDU (:class:`galaug.sources.readers.Extras`), if read.
    extras: Any = None


def read_catalogue(path: str | Path) -> Catalogue:
    """Read a CSV catalogue; :class:`GalaugError` naming the file (and row) for anything it cannot use."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GalaugError(f"{path}: not a readable CSV catalogue ({exc})") from None
    header = list(rows[0]) if rows else []
    lower = {str(name).strip().lower(): name for name in header if name is not None}
    found = {role: next((lower[c] for c in names if c in lower), None) for role, names in _COLUMNS.items()}
    if found["ra"] and found["dec"]:
        kind, cols = "sky", (found["ra"], found["dec"])
    elif found["x"] and found["y"]:
        kind, cols = "pixel", (found["x"], found["y"])
    else:
        raise GalaugError(f"{path}: a catalogue needs the columns ra,dec (degrees) or x,y (pixels); "
                          f"it has {', '.join(header) or 'none'}")
    values = np.empty((len(rows), 2))
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            try:
                values[i, j] = float(row[col])
            except (TypeError, ValueError):
                raise GalaugError(f"{path}: row {i + 1}: {col} = {row[col]!r} is not a number") from None
            if not math.isfinite(values[i, j]):
                raise GalaugError(f"{path}: row {i + 1}: {col} = {row[col]!r} is not finite")
    ids = [str(row[found["id"]]).strip() if found["id"] else f"row{i + 1}" for i, row in enumerate(rows)]
    if not rows:
        raise GalaugError(f"{path}: the catalogue has no rows")
    return Catalogue(path, ids, kind, values[:, 0], values[:, 1])


def _celestial_wcs(header: Any) -> Any:
    from astropy.wcs import WCS, FITSFixedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header)
        return wcs.celestial if wcs.has_celestial else None
    except (ValueError, KeyError, MemoryError):
        return None


def load_frames(reader: Any, files: Sequence[Path], catalogue: Catalogue | None = None) -> list[Frame]:
    """Read every frame with the FITS reader; check that the positions of ``catalogue``, if given, fit them."""
    frames = []
    for path in files:
        try:
            if hasattr(reader, "read_full"):  # with its ivar and mask, cut like the image
                image, bands, units, header, extras = reader.read_full(path)
            else:
                (image, bands, units, header), extras = reader.read_frame(path), None
        except (ValueError, OSError) as exc:
            raise GalaugError(f"{path.name}: {exc}") from None
        frames.append(Frame(Path(path), image, bands, units, _celestial_wcs(header), extras))
    if len(frames) > 1 and all(f.bands is not None and len(f.bands) == 1 for f in frames):
        from galaug.sources.ingest import band_order  # one frame per band: in order of wavelength

        order = band_order([f.bands[0] for f in frames])
        frames.sort(key=lambda f: order.index(f.bands[0]))
    scales = {(None if f.units.pixel_scale is None else round(float(f.units.pixel_scale.to_value("arcsec")), 6))
              for f in frames if f.units.pixel_scale is None or f.units.pixel_scale.unit.physical_type == "angle"}
    if len(scales) > 1:
        listed = ", ".join(f"{f.path.name}: {f.units.pixel_scale}" for f in frames)
        raise GalaugError(f"frames of different pixel scales ({listed}): stamps of one object must share one")
    if catalogue is not None:
        check_positions(frames, catalogue)
    return frames


def check_positions(frames: list[Frame], catalogue: Catalogue) -> None:
    """:class:`GalaugError` if the catalogue's positions cannot be placed on every frame."""
    if catalogue.kind == "sky":
        for frame in frames:
            if frame.wcs is None:
                raise GalaugError(f"{frame.path.name}: has no celestial WCS, so the RA/Dec of {catalogue.path.name} "
                                  "cannot be placed on it (give x,y columns instead)")
    elif len({f.image.shape[1:] for f in frames}) > 1:
        sizes = ", ".join(f"{f.path.name}: {f.image.shape[2]}x{f.image.shape[1]}" for f in frames)
        raise GalaugError(f"frames of different sizes ({sizes}): x,y positions hold for one pixel grid; "
                          "give ra,dec columns")


class EdgeError(ValueError):
    """The stamp of an object would reach past a frame's edge (or miss the frame)."""


def cut(frames: list[Frame], catalogue: Catalogue, row: int, size: int) -> np.ndarray:
    """The (C, size, size) stamp of catalogue row ``row``: every frame cut at the object's position."""
    return cut_with_extras(frames, catalogue, row, size)[0]


def cut_with_extras(frames: list[Frame], catalogue: Catalogue, row: int, size: int) -> tuple[np.ndarray, Any]:
    """:func:`cut`, and the stamp's :class:`~galaug.sources.readers.Extras`: its ivar and mask cut from the
    frames' (when every frame has them), and its identity: the catalogue's id, the first frame's file and
    HDU, RA/Dec (the catalogue's, or its x,y through the first frame's WCS) and the WCS of the first frame's
    stamp (astropy's ``Cutout2D.wcs``)."""
    from astropy.nddata import Cutout2D, NoOverlapError, PartialOverlapError

    from galaug.data.objects import Identity
    from galaug.sources.readers import Extras

    kinds = [k for k in ("ivar", "mask") if all(getattr(f.extras, k, None) is not None for f in frames)]
    planes, maps, wcs, first = [], {k: [] for k in kinds}, None, None
    for frame in frames:
        if catalogue.kind == "sky":
            from astropy.coordinates import SkyCoord

            position = SkyCoord(catalogue.a[row], catalogue.b[row], unit="deg")
            x, y = frame.wcs.world_to_pixel(position)
            # to a micro-pixel: a position that round-trips through the WCS as 49.9999999 is 50, not
            # a stamp one pixel off (Cutout2D rounds the corner of an even-sized stamp)
            position = (round(float(x), 6), round(float(y), 6))
        else:
            position = (float(catalogue.a[row]), float(catalogue.b[row]))
        first = position if first is None else first
        for k, plane in enumerate(frame.image):
            with_wcs = frame is frames[0] and k == 0 and frame.wcs is not None  # the row's WCS: the first band's
            try:
                stamp = Cutout2D(plane, position, (size, size), mode="strict", copy=True,
                                 wcs=frame.wcs if with_wcs else None)
            except (NoOverlapError, PartialOverlapError):
                raise EdgeError(f"within {size // 2} pixels of the edge of {frame.path.name} (or outside it)") \
                    from None
            planes.append(stamp.data)
            wcs = stamp.wcs if with_wcs else wcs
            for kind in kinds:  # the same pixels of the frame's maps
                maps[kind].append(Cutout2D(getattr(frame.extras, kind)[k], position, (size, size),
                                           mode="strict", copy=True).data)
    if catalogue.kind == "sky":
        ra, dec = float(catalogue.a[row]), float(catalogue.b[row])
    elif frames[0].wcs is not None:
        ra, dec = (float(v) for v in frames[0].wcs.pixel_to_world_values(*first))
    else:
        ra = dec = math.nan
    first_extras = frames[0].extras
    identity = Identity(id=catalogue.ids[row], source=str(frames[0].path), ra=ra, dec=dec, wcs=wcs,
                        hdu=first_extras.identity.hdu if first_extras is not None and first_extras.identity else "")
    extras = Extras(ivar=np.stack(maps["ivar"]) if "ivar" in maps else None,
                    mask=np.stack(maps["mask"]) if "mask" in maps else None, identity=identity)
    return np.stack(planes).astype(np.float32, copy=False), extras


def cutout_sources(frames: list[Frame], catalogue: Catalogue, size: int,
                   on_edge: Callable[[str, str], None]) -> list[tuple[str, Callable[[], Iterator]]]:
    """One ingest source per catalogue row (in its order); ``on_edge(label, reason)`` for stamps off a frame."""
    bands = _frame_bands(frames)
    units = frames[0].units

    def items(row: int) -> Iterator[tuple[str, np.ndarray, Any, FileUnits, Any]]:
        label = catalogue.ids[row]
        try:
            stamp, extras = cut_with_extras(frames, catalogue, row, size)
        except EdgeError as exc:
            on_edge(label, str(exc))
            return
        yield label, stamp, bands, units, extras

    return [(catalogue.ids[row], lambda row=row: items(row)) for row in range(len(catalogue.ids))]


def _frame_bands(frames: list[Frame]) -> tuple[str, ...] | None:
    """The band names of the frames, in frame order, when every frame names its bands and they are distinct."""
    names: list[str] = []
    for frame in frames:
        if frame.bands is None:
            return None
        names += frame.bands
    return tuple(names) if len(set(names)) == len(names) else None
