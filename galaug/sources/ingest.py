"""``galaug ingest``: read image files into a galaug dataset.

:func:`ingest` lists the input files, reads them with a reader plugin,
brings every image to one shape (centre crop or flux-conserving
resampling), applies the NaN/Inf policy and streams the images in batches
to a :class:`galaug.data.DatasetWriter`. What was skipped, filled or left
unknown is returned in an :class:`IngestReport` and recorded in the
provenance.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import glob
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np

from galaug.config import config_to_dict, resolve_config
from galaug.data import _format as fmt
from galaug.data import objects as obj
from galaug.data.objects import Identity
from galaug.data.provenance import make_entry
from galaug.data.writer import DatasetWriter, check_output
from galaug.errors import GalaugError, ParamError, PluginError, one_line
from galaug.kinds import Reader
from galaug.progress import progress
from galaug.sources.fluxunits import FluxConversion, zero_points
from galaug.sources._extras import Carried
from galaug.sources.readers import Extras, FileUnits

__all__ = ["IngestReport", "ingest", "find_inputs", "reader_class", "resample_flux", "band_order", "BUILTIN_READERS"]

#: Readers tried first when ``format="auto"``.
BUILTIN_READERS = ("fits", "hdf5", "npy")
FITS = ("crop", "resize")
ON_BAD = ("reject", "fill", "skip")
#: Offenders named in an error message.
_NAMED = 2
#: Skipped images listed in the provenance (the count is always there).
_PROVENANCE_SKIPPED = 1000

# kinds of bad input: NaN/Inf pixels, a file that cannot be read, an image that does not fit; and a
# catalogue object too close to a frame's edge for a stamp, which is skipped, never an error
_NONFINITE, _UNREADABLE, _MISFIT, _EDGE = "nonfinite", "unreadable", "misfit", "edge"


@dataclasses.dataclass
class IngestReport:
    """What :func:`ingest` wrote, skipped and filled.

    Attributes
    ----------
    path : Path
        The dataset written.
    reader : str
        Name of the reader plugin used.
    n_files : int
        Input files.
    n_read : int
        Images read from them (written or skipped).
    n_written : int
    skipped : list of (str, str)
        ``(label, reason)`` of each file or image left out, in input order.
    n_filled_images, n_filled_pixels : int
        Images with NaN/Inf pixels replaced by ``fill_value``, and how many pixels.
    bands : tuple of str
    image_shape : tuple of int
        ``(C, H, W)`` of the images written.
    pixel_scale : astropy.units.Quantity or None
        Of the images written (after resampling); None when unknown.
    flux_unit : str or None
    notes : list of str
        Why the pixel scale or flux unit is unknown.
    detection : dict or None
        With ``detect``: the detection parameters, ``n_detected`` and
        ``n_kept`` (stamps written).
    """

    path: Path
    reader: str
    n_files: int
    n_read: int
    n_written: int
    skipped: list[tuple[str, str]]
    n_filled_images: int
    n_filled_pixels: int
    bands: tuple[str, ...]
    image_shape: tuple[int, int, int]
    pixel_scale: u.Quantity | None
    flux_unit: str | None
    notes: list[str]
    detection: dict[str, Any] | None = None

    def lines(self, *, max_skipped: int = 20) -> list[str]:
        """The report as text, one line per item (``galaug ingest`` prints these)."""
        c, h, w = self.image_shape
        scale = "unknown" if self.pixel_scale is None else f"{self.pixel_scale.value:g} {self.pixel_scale.unit} / pixel"
        out = [
            f"wrote {self.path}: {self.n_written} images ({c} x {h} x {w}) from {self.n_files} "
            f"{'file' if self.n_files == 1 else 'files'} ({self.reader})",
            f"bands {', '.join(self.bands)}; pixel scale {scale}; flux unit {self.flux_unit or 'unknown'}",
        ]
        if self.detection is not None:
            d = self.detection
            out.append(f"detected {d['n_detected']} sources ({d['threshold']:g} x the background RMS, at least "
                       f"{d['npixels']} pixels{', deblended' if d['deblend'] else ''}) on {d['image']}; "
                       f"kept {d['n_kept']}")
        if self.skipped:
            out.append(f"skipped {len(self.skipped)}:")
            out += [f"  {label}: {reason}" for label, reason in self.skipped[:max_skipped]]
            if len(self.skipped) > max_skipped:
                out.append(f"  ... and {len(self.skipped) - max_skipped} more")
        if self.n_filled_pixels:
            out.append(f"filled {self.n_filled_pixels} NaN/Inf pixels in {self.n_filled_images} images")
        out += [f"note: {n}" for n in self.notes]
        return out


# -- inputs ----------------------------------------------------------------------------

def _matches(name: str, patterns: Sequence[str]) -> bool:
    name = name.lower()
    return any(fnmatch.fnmatchcase(name, p.lower()) for p in patterns)


def _readers(manager: Any) -> Iterator[tuple[str, type[Reader]]]:
    """Registered readers, the built-in ones first; others are imported only when reached."""
    entries = sorted(manager.registry.entries("source"), key=lambda e: e.name not in BUILTIN_READERS)
    for entry in entries:
        try:
            cls = manager.registry.load(entry)
        except PluginError:
            continue
        if issubclass(cls, Reader):
            yield entry.name, cls


def reader_class(name: str, *, manager: Any = None) -> type[Reader]:
    """The reader plugin ``name``; a clear error if it is unknown, broken or a simulator."""
    from galaug.pluginmanager import get_manager

    cls = (manager or get_manager()).get("source", name)
    if not issubclass(cls, Reader):
        raise GalaugError(f"source {name!r} is a simulator, not a file reader (use galaug simulate)")
    return cls


def find_inputs(src: str | Path, *, format: str = "auto", manager: Any = None) -> tuple[str, list[Path]]:
    """The reader and the sorted input files of ``src``.

    Parameters
    ----------
    src : str or Path
        A file, a folder (its files that match the reader's patterns; not
        recursive) or a glob (``"cutouts/**/*.fits"``, recursive).
    format : str
        A reader name, or ``"auto"`` to choose by file name.
    manager : galaug.pluginmanager.PluginManager, optional
        The process-wide manager by default.

    Returns
    -------
    name : str
        The reader's name.
    files : list of Path

    Raises
    ------
    GalaugError
        If ``src`` matches nothing, no reader takes its files, or its files
        need several readers.
    """
    from galaug.pluginmanager import get_manager

    manager = manager or get_manager()
    path = Path(src)
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file())
        filtered = True
    elif path.exists():
        candidates, filtered = [path], False
    elif glob.has_magic(str(src)):
        candidates = sorted(Path(p) for p in glob.glob(str(src), recursive=True) if Path(p).is_file())
        filtered = False
        if not candidates:
            raise GalaugError(f"{src}: no files match")
    else:
        raise GalaugError(f"{src}: no such file or directory")

    if format != "auto":
        cls = reader_class(format, manager=manager)
        files = [p for p in candidates if _matches(p.name, cls.patterns)] if filtered and cls.patterns else candidates
        if not files:
            raise GalaugError(f"{src}: no files matching {' '.join(cls.patterns)} (reader {format!r})")
        return format, files

    if not filtered and len(candidates) == 1:
        for name, cls in _readers(manager):
            if _matches(path.name, cls.patterns):
                return name, candidates
        raise ParamError("format", "{src}: no reader takes this file name; choose one with {format}", src=src)
    found: dict[str, list[Path]] = {}
    builtin_found = False
    for name, cls in _readers(manager):
        if builtin_found and name not in BUILTIN_READERS:
            break  # a built-in reader matched: other plugins are not imported
        files = [p for p in candidates if _matches(p.name, cls.patterns)]
        if files:
            found[name] = files
            builtin_found = builtin_found or name in BUILTIN_READERS
    if not found:
        raise ParamError("format", "{src}: no files that a reader takes (looked at {n}); choose one with {format}",
                         src=src, n=len(candidates))
    if len(found) > 1:
        counts = ", ".join(f"{n}: {len(f)}" for n, f in found.items())
        raise ParamError("format", "{src}: holds files of several formats ({counts}); choose one with {format}",
                         src=src, counts=counts)
    [(name, files)] = found.items()
    return name, files


# -- shapes ----------------------------------------------------------------------------

def _overlap(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): the length of input pixel i inside output pixel j, in input pixels."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo = np.maximum(edges[:-1, None], np.arange(n_in)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(1, n_in + 1)[None, :])
    return np.clip(hi - lo, 0, None)


def resample_flux(image: np.ndarray, size: int) -> np.ndarray:
    """Resample (C, H, W) to (C, size, size) keeping the total flux of each band.

    Each output pixel receives the flux of the input pixels it covers, in
    proportion to the area covered (area-weighted rebinning). Downsampling
    by an integer factor sums blocks; upsampling spreads each input pixel
    evenly over the output pixels it covers.
    """
    rows, cols = _overlap(image.shape[-2], size), _overlap(image.shape[-1], size)
    return (rows @ image.astype(np.float64) @ cols.T).astype(np.float32)  # (C, size, size)


def _crop(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[:, top:top + size, left:left + size]


# -- the run ---------------------------------------------------------------------------

class _Agreement:
    """A value every written image should share (pixel scale, flux unit): the first, or unknown.

    ``conflict`` is set when two images declare different values (not when
    one declares none).
    """

    def __init__(self, same: Callable[[Any, Any], bool]) -> None:
        self.same = same
        self.value: Any = None
        self.first = ""
        self.problem = ""
        self.conflict = False
        self.started = False

    def see(self, value: Any, label: str) -> None:
        if self.problem:
            return
        if value is None:
            self.problem = f"{label} declares none"
        elif not self.started:
            self.value, self.first = value, label
        elif not self.same(self.value, value):
            self.problem = f"{self.first} says {self.value}, {label} says {value}"
            self.conflict = True
        self.started = True

    def result(self) -> Any:
        return None if self.problem or not self.started else self.value


def _same_scale(a: u.Quantity, b: u.Quantity) -> bool:
    return a.unit.physical_type == b.unit.physical_type and math.isclose(a.value, b.to_value(a.unit), rel_tol=1e-6)


class _Ingest:
    """The state of one ingest: reference shape and bands, the batch, the bad images."""

    def __init__(self, out: Path, *, bands: tuple[str, ...] | None, size: int | None, fit: str | None,
                 on_bad: str, fill_value: float, batch_size: int, overwrite: bool, user_scale: u.Quantity | None,
                 resample: bool, entry: dict[str, Any]) -> None:
        self.out, self.user_bands, self.size, self.fit = out, bands, size, fit
        self.user_scale, self.resample = user_scale, resample
        self.resampled_from: dict[str, int] = {}  # declared scale -> images resampled from it
        self.size_misfits = 0  # images of another size than --size, with no --fit to say what to do
        self.on_bad, self.fill_value, self.batch_size, self.overwrite = on_bad, fill_value, batch_size, overwrite
        self.entry = entry
        self.n_channels = len(bands) if bands else None
        self.in_shape: tuple[int, int] | None = None  # (H, W) every input must have (size None or resize)
        self.file_bands: tuple[str, ...] | None = None
        self.file_bands_from = ""
        self.scale = _Agreement(_same_scale)
        self.unit = _Agreement(fmt.same_unit)
        self.writer: DatasetWriter | None = None
        self.batch: np.ndarray | None = None
        self.batch_index: list[int] = []
        self.n_read = 0
        self.bad: list[tuple[str, str, str]] = []  # (label, reason, kind)
        self.failing = False  # bad input that ends the ingest was seen: stop writing
        self.n_written = 0
        self.n_filled_images = self.n_filled_pixels = 0
        self.detection: dict[str, Any] | None = None  # with detect: parameters and counts
        self.tables = obj.ObjectTables()  # the objects table's sources, HDUs and WCS frames
        self.maps: tuple[bool, bool, str] | None = None  # whether the images have ivar, mask; the first one's label
        self.batch_maps: dict[str, np.ndarray] = {}
        self.n_distorted = 0  # images whose WCS had distortion terms (SIP), dropped
        self.map_notes: dict[str, int] = {}  # what the readers changed in the maps, and how many images
        self.identified = dict.fromkeys(("ids", "coordinates", "wcs", "sources"), 0)  # images written with each
        self.flux: FluxConversion | None = None  # with to_unit: each image's factor from its file's unit

    # -- per image -------------------------------------------------------------
    def fatal(self, kind: str) -> bool:
        """Whether bad input of ``kind`` ends the ingest with an error (after reading everything)."""
        if kind == _EDGE:
            return False
        return self.on_bad == "reject" or (self.on_bad == "fill" and kind != _NONFINITE)

    def reject(self, label: str, reason: str, kind: str) -> None:
        self.bad.append((label, one_line(reason, 240), kind))
        self.failing = self.failing or self.fatal(kind)

    def add(self, label: str, image: np.ndarray, bands: tuple[str, ...] | None, units: Any,
            extras: Extras | None = None) -> None:
        """Check, fit and queue one image (C, H, W) read from the files, with its ivar, mask and identity."""
        index = self.n_read
        self.n_read += 1
        try:
            carried = Carried.of(extras, self.tables, image.shape)
        except ValueError as exc:
            return self.reject(label, str(exc), _MISFIT)
        if self.flux is not None:  # first, so that fill_value is in the dataset's unit
            image = self.flux(label, image, units.flux_unit)
            carried.scale(_flux_factors(self.flux, units.flux_unit, len(image)))
        if self.resample:
            image = self._to_scale(label, image, units.pixel_scale, carried)
            if image is None:
                return None
        c, h, w = image.shape
        if self.n_channels is None:
            self.n_channels = c
        if c != self.n_channels:
            given = f" (bands {','.join(self.user_bands)} given)" if self.user_bands else ""
            return self.reject(label, f"{c} bands, expected {self.n_channels}{given}", _MISFIT)
        if bands is not None and self.user_bands is None:
            if self.file_bands is None:
                self.file_bands, self.file_bands_from = bands, label
            elif bands != self.file_bands:
                return self.reject(label, f"bands {','.join(bands)} differ from {','.join(self.file_bands)} "
                                          f"of {self.file_bands_from}", _MISFIT)
        if self.size is None or self.fit == "resize":
            if self.in_shape is None:
                self.in_shape = (h, w)
                if self.fit == "resize" and h != w:
                    raise ParamError("fit", '{label}: {fit}="resize" needs square images, got {h}x{w}',
                                     label=label, h=h, w=w)
            if (h, w) != self.in_shape:
                hint = "resizing needs one input shape" if self.size else "crop them to one size"
                return self.reject(label, f"{h}x{w} pixels, expected {self.in_shape[0]}x{self.in_shape[1]} ({hint})",
                                   _MISFIT)
        elif (h, w) != (self.size, self.size) and self.fit is None:
            self.size_misfits += 1  # never cropped silently
            return self.reject(label, f"{h}x{w} pixels, not {self.size}x{self.size}", _MISFIT)
        elif h < self.size or w < self.size:
            return self.reject(label, f"smaller than {self.size}x{self.size} ({h}x{w})", _MISFIT)
        else:
            image = _crop(image, self.size)
            carried.crop((h - self.size) // 2, (w - self.size) // 2, self.size, self.size)  # as _crop does
        finite = np.isfinite(image)
        if not finite.all():
            n_bad = int(finite.size - np.count_nonzero(finite))
            if self.on_bad != "fill":
                return self.reject(label, f"{n_bad} NaN/Inf pixels", _NONFINITE)
            image = np.where(finite, image, np.float32(self.fill_value))
            carried.fill(finite)
            self.n_filled_images += 1
            self.n_filled_pixels += n_bad
        if self.fit == "resize":
            carried.resize(_overlap(image.shape[-2], self.size), _overlap(image.shape[-1], self.size))
            image = resample_flux(image, self.size)
        self.scale.see(units.pixel_scale, label)
        if self.scale.conflict and self.user_scale is None:
            # one dataset has one pixel scale: labelling both with either would be wrong for the other
            raise GalaugError(f"mixed pixel scales: {self.scale.problem}; ingest each scale into its own dataset")
        self.unit.see(units.flux_unit, label)
        maps = (carried.ivar is not None, carried.mask is not None)
        if self.maps is None:
            self.maps = (*maps, label)
        elif maps != self.maps[:2]:
            raise _maps_differ(label, maps, self.maps)
        if not self.failing:  # else keep reading to count the bad ones, but write nothing
            carried.locate(self.tables, *image.shape[1:])
            self.n_distorted += carried.distorted
            for note in carried.notes:
                self.map_notes[note] = self.map_notes.get(note, 0) + 1
            self._queue(image, index, carried)

    def _to_scale(self, label: str, image: np.ndarray, declared: u.Quantity | None,
                  carried: Carried) -> np.ndarray | None:
        """``image`` resampled, conserving flux, from the scale its file declares to ``--pixel-scale``."""
        target = self.user_scale
        if declared is None or declared.unit.physical_type != target.unit.physical_type:
            why = "declares no pixel scale" if declared is None else f"declares {declared}, not comparable"
            return self.reject(label, f"{why}; resample needs the scale of every file", _MISFIT)
        factor = float(target.to_value(declared.unit) / declared.value)  # new pixel size over old
        key = f"{declared.value:.10g} {declared.unit}"
        self.resampled_from[key] = self.resampled_from.get(key, 0) + 1
        if math.isclose(factor, 1.0, rel_tol=1e-6):
            return image
        import torch

        from galaug.degrade.resample import Resample, ResampleConfig

        h, w = image.shape[1:]
        if min(h, w) / factor < 1:
            return self.reject(label, f"{h}x{w} pixels at {declared} leave no whole pixel at {target}", _MISFIT)
        resample = Resample(ResampleConfig(scale=factor, keep_size=False))
        out = resample.apply(torch.from_numpy(image[None]), torch.zeros(1, dtype=torch.int64))
        carried.resample(resample, (h, w))
        return out[0].numpy()

    def _queue(self, image: np.ndarray, index: int, carried: Carried) -> None:
        if self.writer is None:
            self.writer = DatasetWriter(self.out, bands=[f"b{i}" for i in range(len(image))],
                                        image_size=image.shape[1:], provenance=self.entry,
                                        overwrite=self.overwrite, ivar=carried.ivar is not None,
                                        mask=carried.mask is not None, objects=self.tables)
            self.batch = np.empty((self.batch_size, *image.shape), dtype=np.float32)
            self.batch_maps = {"objects": obj.empty_rows(self.batch_size)}
            for kind, dtype in (("ivar", np.float32), ("mask", np.uint16)):
                if getattr(carried, kind) is not None:
                    self.batch_maps[kind] = np.empty((self.batch_size, *image.shape), dtype=dtype)
        for kind, batch in self.batch_maps.items():
            batch[len(self.batch_index)] = carried.row[0] if kind == "objects" else getattr(carried, kind)
        self.batch[len(self.batch_index)] = image
        self.batch_index.append(index)
        self.n_written += 1
        if len(self.batch_index) == self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.batch_index:
            n = len(self.batch_index)
            for key, count in obj.counts(self.batch_maps["objects"][:n]).items():
                self.identified[key] += count
            self.writer.append(self.batch[:n], index=np.asarray(self.batch_index),
                               **{kind: batch[:n] for kind, batch in self.batch_maps.items()})
            self.batch_index = []

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()

    # -- at the end ------------------------------------------------------------
    def error(self, n_files: int, unit: str = "files") -> ParamError | None:
        """The one-line error if bad input ends this ingest, else None."""
        fatal = [b for b in self.bad if self.fatal(b[2])]
        if not fatal:
            return None
        parts = []
        for kind in (_UNREADABLE, _MISFIT, _NONFINITE):
            these = [b for b in fatal if b[2] == kind]
            if not these:
                continue
            if kind == _NONFINITE:
                names = ", ".join(label for label, _, _ in these[:_NAMED])
                parts.append(f"{len(these)} of {self.n_read} images have NaN/Inf pixels (first: {names})")
            else:
                first = "; ".join(f"{label}: {reason}" for label, reason, _ in these[:_NAMED])
                what = f"{len(these)} of {n_files} {unit} cannot be read" if kind == _UNREADABLE \
                    else f"{len(these)} of {self.n_read} images do not fit"
                parts.append(f"{what} (first: {first})")
        only_nan = all(b[2] == _NONFINITE for b in fatal)
        hints = ['{fit}="crop" keeps the centre {size}x{size} pixels, {fit}="resize" resamples'] \
            if self.size_misfits else []
        hints.append('use {on_bad}="fill" or {on_bad}="skip"' if only_nan
                     else 'use {on_bad}="skip" to leave them out')
        return ParamError("fit" if self.size_misfits else "on_bad", "{detail}; " + "; ".join(hints),
                          detail="; ".join(parts), size=self.size)


def _identity_notes(run: _Ingest) -> list[str]:
    """What ingest stored besides the pixels: the maps, how many images have an id, RA/Dec, a WCS."""
    notes = []
    kinds = [k for k, has in zip(("ivar (inverse variance)", "mask (bit flags)"), run.maps or ()) if has]
    if kinds:
        notes.append(f"stored {' and '.join(kinds)} with every image")
    notes += [f"{note} ({n} {'image' if n == 1 else 'images'})" for note, n in run.map_notes.items()]
    i = run.identified
    if i["ids"] or i["coordinates"] or i["wcs"]:
        notes.append(f"identity: {i['ids']} of {run.n_written} images with an object id, {i['coordinates']} with "
                     f"RA/Dec, {i['wcs']} with a WCS")
    if run.n_distorted:
        notes.append(f"the WCS of {run.n_distorted} images had distortion terms (SIP, TPV or tables), not stored: "
                     "their objects table holds the linear WCS only")
    return notes


def _maps_differ(label: str, maps: tuple[bool, bool], first: tuple[bool, bool, str]) -> ParamError:
    """The error for an image whose error or quality maps are not those of the first image."""
    k = 0 if maps[0] != first[0] else 1
    kind, key = (("an error map (ivar)", "err"), ("a quality map (mask)", "dq"))[k]
    has, lacks = (label, first[2]) if maps[k] else (first[2], label)
    return ParamError(key, "{has} has {kind} but {lacks} has none: the images of a dataset all have one or none; "
                           "ingest them separately, or leave the maps out ({err}=\"\" {dq}=\"\" for FITS)",
                      has=has, kind=kind, lacks=lacks)


def _flux_factors(flux: Any, declared: str | None, n_bands: int) -> np.ndarray:
    """The per-band factors ``flux`` (a FluxConversion) has just multiplied an image in unit ``declared`` by."""
    unit = flux.user_unit or declared
    entry = next(v for v in flux.factors.values() if v["from"] == unit and len(v["factor"]) == n_bands)
    return np.asarray(entry["factor"], dtype=np.float64)


def _user_bands(bands: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if bands is None:
        return None
    names = tuple(b.strip() for b in (bands.split(",") if isinstance(bands, str) else bands))
    if not names or not all(names) or len(set(names)) != len(names):
        raise ParamError("bands", "{bands} must be distinct non-empty names like g,r,i, got {text!r}",
                         text=",".join(names))
    return names


def _reader_config(cls: type[Reader], config: Any) -> Any:
    if config is None or isinstance(config, cls.Config):
        return config if config is not None else cls.Config()
    if isinstance(config, Mapping):
        return resolve_config(cls.Config, overrides=dict(config))
    raise GalaugError(f"config for reader {cls.name!r} must be a {cls.Config.__name__} or a mapping, "
                      f"got {type(config).__name__}")


def ingest(src: str | Path, out: str | Path, *, format: str = "auto",
           bands: str | Sequence[str] | None = None, size: int | None = None, fit: str | None = None,
           on_bad: str = "reject", fill_value: float = 0.0, pixel_scale: u.Quantity | str | None = None,
           flux_unit: str | None = None, to_unit: str | None = None,
           zero_point: float | str | Sequence[float] | None = None, resample: bool = False, group: str | None = None,
           cutouts: str | Path | None = None, detect: bool = False, detect_threshold: float | None = None,
           detect_npixels: int | None = None, deblend: bool = False, config: Any = None, overwrite: bool = False,
           batch_size: int = 256, manager: Any = None) -> IngestReport:
    """Read image files into a new galaug dataset.

    Parameters
    ----------
    src : str or Path
        A file, a folder (its files matching the reader's patterns, sorted)
        or a glob; see :func:`find_inputs`.
    out : str or Path
        The dataset to create; it appears only when complete.
    format : str
        Reader name (``"fits"``, ``"hdf5"``, ``"npy"`` or a plugin's), or
        ``"auto"`` to choose by file name.
    bands : str or sequence of str, optional
        Band names (``"g,r,i"``); their number must match every image.
        Default: the names the files declare (all must agree), else ``b0, b1, ...``.
    size : int, optional
        Bring every image to ``size`` x ``size``; keep the shape (all must
        agree) when omitted.
    fit : {None, "crop", "resize"}
        How an image of another size than ``size`` is brought to it. None
        (the default): it is not; such an image is bad (nothing is cropped
        silently). ``crop``: the centre ``size`` x ``size`` pixels (a
        smaller image is bad). ``resize``: flux-conserving resampling
        (:func:`resample_flux`) of square images that all share one shape;
        the pixel scale recorded is multiplied by input size / ``size``.
    on_bad : {"reject", "fill", "skip"}
        Images with NaN/Inf pixels: ``reject`` fails the ingest, naming
        them; ``fill`` replaces those pixels with ``fill_value``; ``skip``
        leaves the images out. Files that cannot be read and images that do
        not fit (bands, shape) fail the ingest unless ``skip``.
    fill_value : float
        Value of replaced pixels with ``on_bad="fill"``.
    pixel_scale : Quantity or str, optional
        Pixel scale of the input files (``"0.2 arcsec"``), overriding what
        they declare; default: the scale the files declare (FITS
        ``PIXSCALE``/``PIXUNIT`` or WCS). Files that declare different
        scales are an error; when some declare none, the scale is unknown.
    flux_unit : str, optional
        Unit of the pixel values; default: the files' ``BUNIT`` when they
        all agree, else unknown.
    to_unit : str, optional
        Convert the pixel values to this unit (``"nJy"``) from each file's
        unit (``flux_unit``, else its ``BUNIT``) with ``astropy.units``
        (:mod:`galaug.sources.fluxunits`: nanomaggy = 3.631 uJy); files in
        another unit or declaring none when ``flux_unit`` is not given are
        errors naming both units. The provenance records the factor of each
        band for each unit converted from. ``fill_value`` is in this unit.
    zero_point : float, str or sequence of float, optional
        With ``to_unit``, for files in counts (``adu``, ``ct``, ``electron``,
        per second or not): the AB magnitude of one count, or one per band
        (``"27,27.1,26.9"``): ``flux_nJy = counts * 10**((31.4 - zero_point) / 2.5)``.
    group : str, optional
        One image per object from one file per band: a pattern of the file
        names with ``{id}`` and ``{band}`` (``"{id}_{band}.fits"``; ``*``
        matches anything), or a CSV manifest (a value ending in ``.csv``)
        with the columns ``id``, ``band`` and ``path``, paths relative to
        its folder (:mod:`galaug.sources.manifest`). Bands in ``bands``
        order, else every band found, by wavelength (:func:`band_order`).
        An object that lacks a band, or a file the pattern does not name or
        the manifest does not list, is bad input (see ``on_bad``).
    cutouts : path, optional
        A CSV catalogue (``ra,dec`` in degrees, or ``x,y`` pixels; ``id``
        optional): ``src`` holds FITS frames (one, or one per band) and one
        ``size`` x ``size`` stamp is cut per catalogue row, in its order,
        through each frame's WCS (:mod:`galaug.sources.cutouts`). Objects
        too close to an edge are skipped and counted.
    detect : bool
        Like ``cutouts``, at the sources that photutils finds on the frames
        (:mod:`galaug.sources.detect`: on the sum of the bands on the first
        frame's grid), brightest first. No source found is an error.
    detect_threshold : float, optional
        With ``detect``: the threshold, in units of the background RMS
        (default 1.5, on the image smoothed by a Gaussian of FWHM 3 pixels).
    detect_npixels : int, optional
        With ``detect``: the least number of connected pixels of a source
        (default 10).
    deblend : bool
        With ``detect``: split blended sources (photutils
        ``deblend_sources``).
    resample : bool
        Resample every image, conserving flux, from the pixel scale its file
        declares to ``pixel_scale`` (the core's ``resample`` degradation;
        N pixels at scale s become floor(N s / pixel_scale)); a file that
        declares none is bad. The provenance counts the images per source
        scale. Use it for files of mixed scales.
    config : dataclass instance or mapping, optional
        The reader's options (its ``Config``, or a mapping of keys).
    overwrite : bool
        Replace an existing ``out`` once the new dataset is complete.
    batch_size : int
        Images held in memory before they are written.
    manager : galaug.pluginmanager.PluginManager, optional
        Where readers are looked up; the process-wide manager by default.

    Returns
    -------
    IngestReport

    Raises
    ------
    GalaugError
        For bad options, no input files, an existing output, and bad input
        under the policy above; nothing is written then.
    """
    if fit is not None and fit not in FITS:
        raise GalaugError(f"fit must be None or one of {', '.join(FITS)}, got {fit!r}")
    if on_bad not in ON_BAD:
        raise GalaugError(f"on_bad must be one of {', '.join(ON_BAD)}, got {on_bad!r}")
    if size is not None and size < 1:
        raise GalaugError(f"size must be a positive number of pixels, got {size}")
    if fit == "resize" and size is None:
        raise ParamError("fit", '{fit}="resize" needs {size}')
    if resample and pixel_scale is None:
        raise ParamError("resample", "{resample} needs {pixel_scale}: the scale to resample every image to")
    if cutouts is not None and size is None:
        raise ParamError("cutouts", "{cutouts} needs {size}: the size of the stamps")
    if cutouts is not None and group is not None:
        raise ParamError("cutouts", "{cutouts} cuts stamps from frames, {group} joins stamps' files; give one")
    if detect:
        from galaug.sources.detect import NPIXELS, THRESHOLD, check_params

        if size is None:
            raise ParamError("detect", "{detect} needs {size}: the size of the stamps")
        if cutouts is not None:
            raise ParamError("detect", "{detect} finds the objects, {cutouts} reads them from a catalogue; give one")
        if group is not None:
            raise ParamError("detect", "{detect} cuts stamps from frames, {group} joins stamps' files; give one")
        detect_threshold = THRESHOLD if detect_threshold is None else detect_threshold
        detect_npixels = NPIXELS if detect_npixels is None else detect_npixels
        check_params(detect_threshold, detect_npixels, names=("detect_threshold", "detect_npixels"))
    else:
        for name, value in (("detect_threshold", detect_threshold), ("detect_npixels", detect_npixels),
                            ("deblend", deblend or None)):
            if value is not None:
                raise ParamError(name, "{" + name + "} is an option of {detect}")
    if resample and fit == "resize":
        raise ParamError("resample", "{resample} and {fit}=\"resize\" both change the pixel scale; give one")
    if batch_size < 1:
        raise GalaugError(f"batch_size must be positive, got {batch_size}")
    if not (math.isfinite(fill_value) and abs(fill_value) <= float(np.finfo(np.float32).max)):
        raise ParamError("fill_value", "{fill_value} must be a finite 32-bit float, got {value}", value=fill_value)
    user_bands = _user_bands(bands)
    try:
        user_scale = fmt.pixel_scale_quantity(fmt.pixel_scale_attr(pixel_scale))
        user_unit = fmt.flux_unit_attr(flux_unit)
    except ValueError as exc:
        raise GalaugError(str(exc)) from None
    if zero_point is not None and to_unit is None:
        raise ParamError("zero_point", "{zero_point} converts counts to flux and goes with {to_unit} (e.g. nJy)")
    points = zero_points(zero_point)
    flux = None if to_unit is None else FluxConversion(to_unit, zero_point=points, user_unit=user_unit)
    out = check_output(out, overwrite=overwrite)

    from galaug.pluginmanager import get_manager

    manager = manager or get_manager()
    name, files = find_inputs(src, format=format, manager=manager)
    cls = reader_class(name, manager=manager)
    reader = cls(_reader_config(cls, config))
    options = {"bands": list(user_bands) if user_bands else None, "size": size, "fit": fit, "on_bad": on_bad,
               "fill_value": fill_value, "pixel_scale": fmt.pixel_scale_attr(user_scale), "flux_unit": user_unit,
               "to_unit": None if flux is None else flux.to_unit, "zero_point": None if points is None else list(points),
               "resample": resample, "group": group, "cutouts": None if cutouts is None else str(cutouts),
               "detect": {"threshold": detect_threshold, "npixels": detect_npixels, "deblend": deblend} if detect
               else None}
    entry = make_entry("ingest", plugin=f"source:{name}", plugin_version=manager.registry.entry("source", name).version,
                       config=config_to_dict(reader.config), options=options, source=str(src))
    run = _Ingest(out, bands=user_bands, size=size, fit=fit, on_bad=on_bad, fill_value=fill_value,
                  batch_size=batch_size, overwrite=overwrite, user_scale=user_scale, resample=resample, entry=entry)
    run.flux = flux
    try:
        if cutouts is not None or detect:
            from galaug.sources import cutouts as frames_module

            if not hasattr(reader, "read_frame"):
                raise GalaugError(f"cutouts are cut from FITS frames; the {name!r} reader has none")
            if detect:
                from galaug.sources.detect import detect as find_sources

                frames = frames_module.load_frames(reader, files)
                found = find_sources(frames, threshold=detect_threshold, npixels=detect_npixels, deblend=deblend)
                if not found.ids:
                    raise ParamError("detect_threshold", "no sources detected on {image} at {detect_threshold} "
                                     "{threshold:g} (x the background RMS) with at least {npixels} connected "
                                     "pixels; lower {detect_threshold} or {detect_npixels}",
                                     image=found.image, threshold=detect_threshold, npixels=detect_npixels)
                run.detection = {**found.params, "n_detected": found.n_detected}
                catalogue = found.catalogue()
            else:
                catalogue = frames_module.read_catalogue(cutouts)
                frames = frames_module.load_frames(reader, files, catalogue)
            sources = frames_module.cutout_sources(frames, catalogue, size,
                                                   lambda label, why: run.reject(label, why, _EDGE))
        elif group is not None:
            sources = _grouped_sources(reader, files, group, user_bands, run)
        else:
            sources = [(p.name, functools.partial(_file_items, reader, p)) for p in files]
        unit = "file" if group is None and cutouts is None and not detect else "object"
        with progress(total=len(sources), desc="ingest", unit=unit) as bar:
            for label, read in sources:
                items, n = read(), 0
                while True:
                    try:  # errors of the reader, not of what is done with its images
                        item = next(items, None)
                    except (ValueError, OSError) as exc:
                        after = f" (after {n} images)" if n else ""
                        run.reject(label, f"{str(exc) or type(exc).__name__}{after}", _UNREADABLE)
                        break
                    if item is None:
                        break
                    run.add(*item)
                    n += 1
                bar.update(1)
        error = run.error(len(sources), f"{unit}s")
        if error is not None:
            raise error
        if run.writer is None:
            if run.bad:
                label, reason, _ = run.bad[0]
                raise GalaugError(f"no images left: all {len(run.bad)} were skipped (first: {label}: {reason})")
            raise GalaugError(f"{src}: no images in {len(files)} {'file' if len(files) == 1 else 'files'}")
        run.flush()
        report = _finish(run, name, files, user_scale, user_unit)
        run.writer.close()
    except BaseException:
        run.abort()
        raise
    return report


#: The usual order of bands by wavelength; other names sort after these, HST/JWST filters (F606W) by number.
_BAND_ORDER = ("FUV", "NUV", "u", "U", "g", "B", "V", "r", "R", "i", "I", "z", "Z", "y", "Y", "J", "H", "K", "Ks")


def band_order(names: Sequence[str]) -> list[str]:
    """``names`` in the usual order by wavelength (u, g, r, i, z, y, J, H, K; F435W < F814W); others by name."""
    def key(name: str) -> tuple:
        if name in _BAND_ORDER:
            return (0, _BAND_ORDER.index(name), "")
        digits = re.fullmatch(r"F(\d{3,4})[A-Z]{0,2}", name.upper())
        if digits:
            return (1, int(digits.group(1)), name)
        return (2, 0, name)

    return sorted(names, key=key)


def _group_regex(pattern: str) -> re.Pattern:
    """``"{id}_{band}.fits"`` as a regular expression with the groups ``id`` and ``band`` (``*``: anything)."""
    if pattern.count("{id}") != 1 or pattern.count("{band}") != 1:
        raise ParamError("group", "{group} {text!r} must hold {{id}} and {{band}} once each "
                         "(e.g. \"{{id}}_{{band}}.fits\")", text=pattern)
    parts = re.split(r"(\{id\}|\{band\}|\*)", pattern)
    fields = {"{id}": "(?P<id>.+)", "{band}": "(?P<band>[^/\\\\]+?)", "*": ".*"}
    return re.compile("".join(fields.get(part, re.escape(part)) for part in parts))


def _grouped_sources(reader: Reader, files: list[Path], pattern: str, bands: tuple[str, ...] | None,
                     run: _Ingest) -> list[tuple[str, Callable[[], Iterator]]]:
    """One source per object of the files named by ``pattern``: its per-band files read as one image.

    Files that the pattern does not name, and objects that lack a band, are
    bad input (misfits) of the ingest.
    """
    from galaug.sources.manifest import is_manifest, manifest_objects

    if is_manifest(pattern):  # a CSV manifest of id, band, path
        objects = manifest_objects(pattern, files, lambda label, why: run.reject(label, why, _MISFIT))
        return _band_sources(reader, objects, bands)
    regex = _group_regex(pattern)
    objects: dict[str, dict[str, Path]] = {}
    for path in files:
        match = regex.fullmatch(path.name)
        if match is None:
            run.reject(path.name, f"not named as --group {pattern!r} says", _MISFIT)
            continue
        per_band = objects.setdefault(match["id"], {})
        if match["band"] in per_band:
            raise GalaugError(f"{path.name} and {per_band[match['band']].name}: two files of object "
                              f"{match['id']!r} in band {match['band']!r}")
        per_band[match["band"]] = path
    if not objects:
        raise ParamError("group", "{group} {text!r} names none of the {n} files (first: {first})",
                         text=pattern, n=len(files), first=files[0].name if files else "none")
    return _band_sources(reader, objects, bands)


def _band_sources(reader: Reader, objects: dict[str, dict[str, Path]],
                  bands: tuple[str, ...] | None) -> list[tuple[str, Callable[[], Iterator]]]:
    """One source per object of ``{id: {band: file}}``, its bands those of ``bands``, else all found."""
    wanted = tuple(bands) if bands else tuple(band_order({b for per_band in objects.values() for b in per_band}))
    return [(name, functools.partial(_object_items, reader, name, per_band, wanted))
            for name, per_band in objects.items()]


def _object_items(reader: Reader, name: str, per_band: dict[str, Path],
                  bands: tuple[str, ...]) -> Iterator[tuple[str, np.ndarray, Any, FileUnits, Extras]]:
    """The image of one object: one single-band image from each of its per-band files, in ``bands`` order.

    Its maps are the files' when every file has them; its identity is the
    object's id, and the file, HDU, RA/Dec and WCS of its first band.
    """
    missing = [b for b in bands if b not in per_band]
    if missing:
        raise ValueError(f"no file in band(s) {', '.join(missing)} (has {', '.join(band_order(per_band))})")
    planes, units, extras = [], [], []
    for band in bands:
        items = list(_file_items(reader, per_band[band]))
        if len(items) != 1 or items[0][1].shape[0] != 1:
            shape = "x".join(map(str, items[0][1].shape)) if len(items) == 1 else f"{len(items)} images"
            raise ValueError(f"{per_band[band].name}: one single-band image per file expected, got {shape}")
        planes.append(items[0][1][0])
        units.append(items[0][3])
        extras.append(items[0][4])
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise ValueError(f"bands of different sizes ({', '.join('x'.join(map(str, s)) for s in sorted(shapes))})")
    scales = {str(u_.pixel_scale) for u_ in units}
    if len(scales) != 1:
        raise ValueError(f"bands of different pixel scales ({', '.join(sorted(scales))})")
    maps = {kind: np.concatenate([getattr(e, kind) for e in extras])
            for kind in ("ivar", "mask") if all(getattr(e, kind) is not None for e in extras)}
    first = extras[0].identity or Identity()
    identity = dataclasses.replace(first, id=name)
    yield name, np.stack(planes), bands, units[0], Extras(**maps, identity=identity,
                                                          notes=tuple(n for e in extras for n in e.notes))


def _file_items(reader: Reader, path: Path) -> Iterator[tuple[str, np.ndarray, Any, FileUnits, Extras]]:
    """``(label, image, bands, units, extras)`` of each image of ``path``; no units from a reader that has none,
    and as extras only the file (its identity's source) from a reader without ``read_items``."""
    read_items = getattr(reader, "read_items", None)
    if read_items is not None:
        yield from read_items(path)
        return
    source = Extras(identity=Identity(source=str(path)))
    read_with_units = getattr(reader, "read_with_units", None)
    if read_with_units is not None:
        for item in read_with_units(path):
            yield (*item, source)
        return
    for label, image, bands in reader.read(path):
        image = np.asarray(image, dtype=np.float32)
        if image.ndim == 2:
            image = image[None]
        if image.ndim != 3:
            raise ValueError(f"reader {reader.name!r} gave an image of shape {image.shape}, not (C, H, W)")
        yield label, image, bands, FileUnits(), source


def _finish(run: _Ingest, name: str, files: list[Path], user_scale: u.Quantity | None,
            user_unit: str | None) -> IngestReport:
    """Settle bands, pixel scale and flux unit, record them on the writer, and build the report.

    The writer is created at the first good image, before the files have
    all been seen; what only the end knows is set on it here, before it
    writes its attributes on close.
    """
    writer = run.writer
    notes = []
    n_channels = writer.image_shape[0]
    bands = run.user_bands or run.file_bands or tuple(f"b{i}" for i in range(n_channels))
    scale = user_scale if user_scale is not None else run.scale.result()
    if scale is None and run.scale.problem:
        notes.append(f"pixel scale unknown: {run.scale.problem} (set it with --pixel-scale)")
    factor = 1.0
    if run.fit == "resize":
        factor = run.in_shape[0] / run.size
        scale = None if scale is None else scale * factor
    unit = user_unit if run.flux is None else run.flux.to_unit
    if run.flux is not None:
        notes += run.flux.notes()
    elif unit is None and run.unit.result() is not None:
        try:
            unit = fmt.flux_unit_attr(run.unit.result())
        except ValueError as exc:
            notes.append(f"flux unit unknown: {exc} (set it with --flux-unit)")
    elif unit is None and run.unit.problem:
        notes.append(f"flux unit unknown: {run.unit.problem} (set it with --flux-unit)")
    edge = sum(kind == _EDGE for _, _, kind in run.bad)
    if edge:
        notes.append(f"skipped {edge} objects too close to a frame's edge for a {run.size}x{run.size} stamp")
    if run.resampled_from:
        notes.append("resampled to " + f"{scale.value:g} {scale.unit}: " + ", ".join(
            f"{n} from {source}" for source, n in run.resampled_from.items()))
    notes += _identity_notes(run)
    skipped = [(label, reason) for label, reason, _ in run.bad]
    writer.set_metadata(bands=bands, pixel_scale=scale, flux_unit=unit, provenance=dict(
        n_files=len(files), n_read=run.n_read, n_written=run.n_written, resample_factor=factor,
        n_filled_pixels=run.n_filled_pixels, n_skipped=len(skipped), resampled_from=run.resampled_from,
        skipped=[list(s) for s in skipped[:_PROVENANCE_SKIPPED]], notes=notes,
        **({} if run.detection is None else {"detection": {**run.detection, "n_kept": run.n_written}}),
        **({} if run.flux is None else {"flux_conversion": run.flux.record()}),
    ))
    return IngestReport(
        path=writer.path, reader=name, n_files=len(files), n_read=run.n_read, n_written=run.n_written,
        skipped=skipped, n_filled_images=run.n_filled_images, n_filled_pixels=run.n_filled_pixels,
        bands=bands, image_shape=writer.image_shape, pixel_scale=scale, flux_unit=unit, notes=notes,
        detection=None if run.detection is None else {**run.detection, "n_kept": run.n_written},
    )
