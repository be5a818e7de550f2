"""File readers: FITS images, HDF5 and NumPy arrays, the sources behind ``galaug ingest``.

Every reader yields ``(label, image, bands)`` with ``image`` a (C, H, W)
float32 array (:meth:`galaug.kinds.Reader.read`). They also offer
:meth:`read_with_units`, which adds the pixel scale and flux unit a file
declares, so that ingest records them.

Files are opened lazily: a FITS header is checked against the file size
before any pixel is read, arrays are memory-mapped or read in slices, so
a corrupt or lying file is refused without allocating what it claims.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import astropy.units as u
import numpy as np

from galaug.errors import describe, one_line, require
from galaug.kinds import Reader

__all__ = [
    "FileUnits",
    "FitsConfig",
    "FitsReader",
    "HDF5Config",
    "HDF5Reader",
    "NpyConfig",
    "NpyReader",
    "MAX_BANDS",
    "AUXILIARY_EXTNAMES",
    "LAYOUTS",
]

#: A cube axis this long or shorter may be the band axis (``band_axis="auto"``).
MAX_BANDS = 16
#: The most a deflate stream (gzip, zip) can expand: 1032 bytes out per byte in.
DEFLATE_MAX_RATIO = 1032
#: Bytes of array data read at once by the HDF5 and NumPy readers.
READ_BYTES = 64 * 2**20

BandAxis = Literal["auto", "first", "last"]
Item = tuple[str, np.ndarray, "tuple[str, ...] | None"]


@dataclasses.dataclass(frozen=True)
class FileUnits:
    """The pixel scale and flux unit a file declares; None where it declares none.

    ``flux_unit`` is the file's string as written (a FITS ``BUNIT``), not
    yet checked against astropy's units.
    """

    pixel_scale: u.Quantity | None = None
    flux_unit: str | None = None


_NO_UNITS = FileUnits()


def _band_axis(shape: tuple[int, ...], band_axis: str, first: int, last: int) -> int:
    """The band axis of ``shape``: axis ``first`` or ``last``, as ``band_axis`` says.

    ``"auto"`` takes the end axis of length <= :data:`MAX_BANDS` when exactly
    one qualifies; when both do, the one that leaves square images, if only
    one does.
    """
    if band_axis == "first":
        return first
    if band_axis == "last":
        return last
    short = [ax for ax in (first, last) if shape[ax] <= MAX_BANDS]
    if len(short) == 2:
        short = [ax for ax in short if len({shape[i] for i in range(first, last + 1) if i != ax}) == 1]
        which = "both end axes could be, and neither or both leave square images"
    else:
        which = f"neither end axis is {MAX_BANDS} long or shorter"
    if len(short) == 1:
        return short[0]
    raise ValueError(f"cannot tell the band axis of shape {tuple(shape)}: {which}; "
                     "set band_axis=first or band_axis=last")


def _clean_names(names: Any) -> tuple[str, ...] | None:
    """Band names from an attribute (a list, or a comma-separated string); None if unusable."""
    if names is None:
        return None
    if isinstance(names, bytes):
        names = names.decode()
    if isinstance(names, str):
        names = names.split(",")
    out = tuple((n.decode() if isinstance(n, bytes) else str(n)).strip() for n in np.ravel(names))
    return out if out and all(out) and len(set(out)) == len(out) else None


def _check_real(dtype: np.dtype) -> None:
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_):
        raise ValueError(f"pixels of type {dtype} are not real numbers")


# -- FITS ------------------------------------------------------------------------------

@dataclasses.dataclass
class FitsConfig:
    """Options of the ``fits`` reader."""

    #: Band axis of a 3-d cube, in the order of the array astropy returns
    #: (``first`` = NAXIS3, ``last`` = NAXIS1); ``auto`` takes the end axis
    #: of 16 or fewer planes.
    band_axis: BandAxis = "auto"
    #: The image HDU to read: an ``EXTNAME`` (``SCI``), ``EXTNAME,EXTVER``
    #: (``SCI,2``) or an index (``0`` is the primary HDU). Empty: the science
    #: images: every image HDU with data except error, quality and weight
    #: extensions (:data:`AUXILIARY_EXTNAMES`), and only the ``SCI`` ones
    #: where there are any (HST and JWST files).
    hdu: str = ""


#: The pixel types of the FITS standard.
_FITS_BITPIX = (8, 16, 32, 64, -32, -64)
#: EXTNAMEs of image HDUs that accompany a science image rather than hold a band: errors, data
#: quality, weights, variances, exposure and context maps (HST: ERR, DQ, WHT, CTX, SAMP, TIME; JWST: ERR, DQ,
#: VAR_POISSON, VAR_RNOISE, VAR_FLAT, CON, AREA; others: IVM, RMS, VAR, MASK, EXP).
AUXILIARY_EXTNAMES = frozenset({"ERR", "DQ", "WHT", "CTX", "CON", "SAMP", "TIME", "AREA", "VAR_POISSON",
                                "VAR_RNOISE", "VAR_FLAT", "IVM", "RMS", "VAR", "MASK", "EXP", "EXPTIME"})
#: Header keywords that scale integer pixels; astropy cannot memory-map such data.
_SCALING = ("BSCALE", "BZERO", "BLANK")
#: Keywords that name the filter of an image, in the order they are tried (HST: FILTNAM1 for WFPC2,
#: FILTER1/FILTER2 for ACS, where the other wheel says CLEAR).
_BAND_KEYS = ("FILTER", "BAND", "FILTNAM1", "FILTER1", "FILTER2")


def _astropy_note(caught: list[warnings.WarningMessage], category: type) -> str:
    """What astropy warned about while failing (e.g. a header size), to end the error with."""
    notes = [one_line(str(w.message), 200) for w in caught
             if issubclass(w.category, category) and "may have been truncated" not in str(w.message)]
    return f"; astropy: {notes[0]}" if notes else ""


def _fits_axes(hdr: Any) -> list[int]:
    """NAXIS1, NAXIS2, ... as the header states them (FITS order: x first)."""
    return [int(hdr.get(f"NAXIS{i}", 0)) for i in range(1, int(hdr.get("NAXIS", 0)) + 1)]


def _fits_size_check(hdu: Any, file_size: int, gzipped: bool) -> None:
    """Refuse an image HDU whose header claims more data than the file can hold, before reading it."""
    from astropy.io import fits

    axes = _fits_axes(hdu.header)
    claimed = abs(int(hdu.header.get("BITPIX", 8))) // 8 * math.prod(axes)
    shape = " x ".join(map(str, axes))
    info = hdu.fileinfo()
    start, span = int(info["datLoc"]), int(info["datSpan"])
    if isinstance(hdu, fits.CompImageHDU):  # data are a table of compressed tiles
        if not gzipped and start + span > file_size + 2880:
            raise ValueError(f"truncated: the compressed image needs {span} bytes, "
                             f"the file holds {max(0, file_size - start)} after the header")
        if claimed > DEFLATE_MAX_RATIO * max(span, 2880):
            raise ValueError(f"the header claims {shape} pixels ({claimed} bytes), "
                             f"more than {span} bytes of compressed data can hold")
        return
    if gzipped:
        if start + claimed > DEFLATE_MAX_RATIO * file_size:
            raise ValueError(f"the header claims {shape} pixels ({claimed} bytes), "
                             f"more than a gzip file of {file_size} bytes can hold")
    elif start + claimed > file_size:
        raise ValueError(f"truncated: the header claims {shape} pixels ({claimed} bytes of data) "
                         f"but the file holds {max(0, file_size - start)} bytes after the header")


def _fits_text(hdr: Any, *keys: str) -> str | None:
    """The first of ``keys`` that holds a non-empty string."""
    for key in keys:
        value = hdr.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _band_keyword(*headers: Any) -> str | None:
    """The filter a header names (:data:`_BAND_KEYS`, a wheel that says CLEAR skipped), trying each header."""
    for hdr in headers:
        for key in _BAND_KEYS:
            value = _fits_text(hdr, key)
            if value and not value.upper().startswith("CLEAR") and value.upper() not in ("N/A", "NONE"):
                return value
    return None


def _bands_list(hdr: Any, n: int) -> list[str | None] | None:
    """The comma list of a ``BANDS`` keyword when it names ``n`` bands."""
    names = _clean_names(_fits_text(hdr, "BANDS"))
    return list(names) if names and len(names) == n else None


def _all_names(names: list[str | None]) -> tuple[str, ...] | None:
    """The band names if every plane has one and they are distinct, else None."""
    return None if None in names else _clean_names(names)


def _declared_band_axis(hdr: Any, shape: tuple[int, ...]) -> int | None:
    """The axis of a cube whose length is the number of bands the header declares.

    ``NBANDS`` (written by ``galaug export``) or BAND1..BANDn; NAXIS3 (numpy
    axis 0) is preferred when both end axes have that length.
    """
    n = hdr.get("NBANDS")
    if not (isinstance(n, int) and n > 0):
        n = 0
        while f"BAND{n + 1}" in hdr:
            n += 1
    for axis in (0, 2):
        if n and shape[axis] == n:
            return axis
    return None


def _fits_pixel_scale(hdr: Any) -> u.Quantity | None:
    """``PIXSCALE``/``PIXUNIT`` (arcsec when PIXUNIT is missing), else the celestial WCS."""
    if "PIXSCALE" in hdr:
        try:
            scale = float(hdr["PIXSCALE"]) * u.Unit(str(hdr.get("PIXUNIT", "arcsec")), parse_strict="raise")
        except (TypeError, ValueError):
            return None
        return scale if scale.unit.physical_type in ("angle", "length") and scale.value > 0 else None
    if "CTYPE1" not in hdr:
        return None
    from astropy.wcs import WCS, FITSFixedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(hdr)
            if not wcs.has_celestial:
                return None
            sx, sy = (s.to(u.arcsec) for s in wcs.celestial.proj_plane_pixel_scales())
    except (ValueError, KeyError, MemoryError):
        return None
    if not (sx.value > 0 and math.isclose(sx.value, sy.value, rel_tol=1e-3)):
        return None  # non-square pixels have no single scale
    return float(f"{(sx.value + sy.value) / 2:.10g}") * u.arcsec  # 10 digits: drop the round-off of CD/CDELT


class FitsReader(Reader):
    """FITS images: 2-d, 3-d cubes, or one image HDU per band."""

    name = "fits"
    Config = FitsConfig
    patterns = ("*.fits", "*.fit", "*.fts", "*.fits.gz", "*.fit.gz", "*.fts.gz")

    def read(self, path: Path) -> Iterator[Item]:
        for label, image, bands, _ in self.read_with_units(path):
            yield label, image, bands

    def read_with_units(self, path: Path) -> Iterator[tuple[str, np.ndarray, tuple[str, ...] | None, FileUnits]]:
        """Like :meth:`read`, with the units the file declares (see :meth:`read_frame`)."""
        image, bands, units, _ = self.read_frame(path)
        yield Path(path).name, image, bands, units

    def read_frame(self, path: Path) -> tuple[np.ndarray, tuple[str, ...] | None, FileUnits, Any]:
        """The image (C, H, W) of one file, its band names, units, and its HDU's header (for a WCS).

        One file is one object: the image of the only science HDU with data
        (2-d, or a 3-d cube), or, when several hold data, one band per HDU.
        Tables, empty HDUs and error, quality and weight extensions
        (:data:`AUXILIARY_EXTNAMES`) are skipped; where ``SCI`` extensions
        exist only they are read; ``hdu`` in the config picks one HDU.
        Band names come from ``BAND1``.., ``BANDS`` (a comma list),
        ``FILTER``, ``BAND``, ``FILTNAM1``, ``FILTER1``/``FILTER2`` (not
        ``CLEAR``), in the image's header and then the primary one. Scaled
        integers (``BSCALE``/``BZERO``) are read without memory-mapping.
        """
        from astropy.io import fits
        from astropy.utils.exceptions import AstropyUserWarning

        path = Path(path)
        gzipped = path.name.lower().endswith(".gz")
        file_size = path.stat().st_size
        try:
            # astropy's warnings about a damaged header would print lines of their own before galaug's
            # one error line: they are recorded instead, and the first becomes part of the error
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                memmap = not gzipped
                while True:
                    # the file is ours to close: astropy leaves it open when it fails inside fits.open
                    with open(path, "rb") as fh, fits.open(fh, memmap=memmap, lazy_load_hdus=True) as hdul:
                        hdus = self._select(hdul)
                        if memmap and any(k in h.header for h in hdus for k in _SCALING):
                            memmap = False  # scaled integers (BSCALE/BZERO): astropy cannot memory-map them
                            continue
                        for hdu in hdus:
                            bitpix = hdu.header.get("BITPIX")
                            if bitpix not in _FITS_BITPIX or isinstance(bitpix, bool):
                                raise ValueError(f"BITPIX = {bitpix!r} is not a FITS pixel type "
                                                 f"({', '.join(map(str, _FITS_BITPIX))})")
                            _fits_size_check(hdu, file_size, gzipped)
                        primary = hdul[0].header
                        image, bands = self._single(hdus[0], primary) if len(hdus) == 1 else self._per_band(hdus)
                        headers = (hdus[0].header, primary)  # the image's, then the primary
                        scales = [s for s in map(_fits_pixel_scale, headers) if s is not None]
                        units = FileUnits(scales[0] if scales else None,
                                          _fits_text(headers[0], "BUNIT") or _fits_text(headers[1], "BUNIT"))
                        header = hdus[0].header.copy()
                    break
        except (OSError, EOFError, IndexError, KeyError, TypeError) as exc:
            # astropy reports a broken file through any of these
            raise ValueError(f"not a readable FITS file ({describe(exc)}"
                             f"{_astropy_note(caught, AstropyUserWarning)})") from None
        return image, bands, units, header

    def _select(self, hdul: Any) -> list[Any]:
        """The image HDUs to read (:attr:`FitsConfig.hdu`): the one asked for, else the science images."""
        with_data = [h for h in hdul if h.is_image and math.prod(_fits_axes(h.header) or [0]) > 0]
        listed = ", ".join(f"{h.name or 'PRIMARY'},{h.ver}" for h in with_data) or "none"
        want = self.config.hdu.strip()
        if want.isdigit():
            index = int(want)
            if index >= len(hdul):
                raise ValueError(f"no HDU {index}: the file has {len(hdul)} (0 to {len(hdul) - 1})")
            chosen = [h for h in with_data if h is hdul[index]]
            if not chosen:
                raise ValueError(f"HDU {index} holds no image data (image HDUs: {listed})")
            return chosen
        if want:
            name, _, ver = want.partition(",")
            if ver and not ver.strip().isdigit():
                raise ValueError(f"hdu={want!r}: expected NAME, NAME,EXTVER or an index")
            chosen = [h for h in with_data if h.name.upper() == name.strip().upper()
                      and (not ver or h.ver == int(ver))]
            if not chosen:
                raise ValueError(f"no image HDU {want!r} (image HDUs: {listed})")
        else:
            if not with_data:
                raise ValueError("no image data (only empty or table HDUs)")
            chosen = [h for h in with_data if h.name.upper() not in AUXILIARY_EXTNAMES]
            chosen = [h for h in chosen if h.name.upper() == "SCI"] or chosen
            if not chosen:
                raise ValueError(f"no science image, only {listed} (choose one with hdu=NAME)")
        names = {h.name.upper() for h in chosen}
        if len(chosen) > 1 and len(names) == 1 and _all_names([_band_keyword(h.header) for h in chosen]) is None:
            # several chips or exposures of one extension name (ACS/WFC's SCI,1 and SCI,2), not bands
            name = chosen[0].name
            raise ValueError(f"{len(chosen)} {name} extensions ({', '.join(f'{name},{h.ver}' for h in chosen)}) "
                             f"name no distinct bands: choose one with hdu={name},{chosen[0].ver}")
        return chosen

    def _single(self, hdu: Any, primary: Any) -> tuple[np.ndarray, tuple[str, ...] | None]:
        data, hdr = hdu.data, hdu.header
        _check_real(data.dtype)
        if data.ndim == 2:
            name = _fits_text(hdr, "BAND1") or (_bands_list(hdr, 1) or [None])[0] or _band_keyword(hdr, primary)
            return np.array(data[None], dtype=np.float32), _all_names([name])
        if data.ndim != 3:
            raise ValueError(f"{data.ndim}-d image of shape {data.shape}; expected 2-d or a 3-d cube")
        axis = _declared_band_axis(hdr, data.shape) if self.config.band_axis == "auto" else None
        if axis is None:
            axis = _band_axis(data.shape, self.config.band_axis, 0, 2)
        image = np.array(np.moveaxis(data, axis, 0), dtype=np.float32)  # (C, H, W), a copy off the file
        names = [_fits_text(hdr, f"BAND{i}") for i in range(1, len(image) + 1)]
        if None in names:
            names = _bands_list(hdr, len(image)) or _bands_list(primary, len(image)) or names
        if len(image) == 1 and names[0] is None:
            names = [_band_keyword(hdr, primary)]
        return image, _all_names(names)

    def _per_band(self, hdus: list[Any]) -> tuple[np.ndarray, tuple[str, ...] | None]:
        shapes = [tuple(reversed(_fits_axes(h.header))) for h in hdus]
        if any(len(s) != 2 for s in shapes) or len(set(shapes)) != 1:
            raise ValueError(f"image HDUs of shapes {', '.join(map(str, shapes))}: a multi-extension file "
                             "must hold one 2-d image of the same size per band")
        planes = []
        for h in hdus:
            _check_real(h.data.dtype)
            planes.append(np.array(h.data, dtype=np.float32))
        names = [_band_keyword(h.header) or _fits_text(h.header, "EXTNAME") for h in hdus]
        return np.stack(planes), _all_names(names)


# -- arrays: HDF5 and NumPy ------------------------------------------------------------

def _iter_stack(label: str, shape: tuple[int, ...], dtype: np.dtype, rows: Callable[[int, int], np.ndarray],
                band_axis: str, bands: tuple[str, ...] | None, units: FileUnits) -> Iterator[Any]:
    """Yield the images of an array of shape (H, W), (N, H, W), (N, C, H, W) or (N, H, W, C).

    ``rows(start, stop)`` reads a slice along the first axis; about
    :data:`READ_BYTES` are read at a time.
    """
    _check_real(dtype)
    if len(shape) == 2:  # a single image
        yield label, np.array(rows(0, shape[0]), dtype=np.float32)[None], bands, units
        return
    if len(shape) == 3:
        axis = None
    elif len(shape) == 4:
        axis = _band_axis(shape, band_axis, 1, 3)
    else:
        raise ValueError(f"array of shape {tuple(shape)}; expected (N, H, W), (N, C, H, W) or (N, H, W, C)")
    step = max(1, READ_BYTES // max(1, math.prod(shape[1:]) * dtype.itemsize))
    for start in range(0, shape[0], step):
        block = np.asarray(rows(start, min(start + step, shape[0])), dtype=np.float32)
        block = block[:, None] if axis is None else np.moveaxis(block, axis, 1)  # (n, C, H, W)
        for k, image in enumerate(block):
            yield f"{label}[{start + k}]", np.ascontiguousarray(image), bands, units


@dataclasses.dataclass
class HDF5Config:
    """Options of the ``hdf5`` reader."""

    #: Path of the image array inside the file.
    dataset: str = "images"
    #: Band axis of a 4-d array: ``first`` for (N, C, H, W), ``last`` for
    #: (N, H, W, C); ``auto`` takes the one of 16 or fewer.
    band_axis: BandAxis = "auto"
    #: A survey file layout that sets the rest: ``mmu`` (the Multimodal Universe's
    #: ``image_array`` or ``image_flux``, ``image_band``, ``image_scale``, ``object_id``) or ``galaxiesml``
    #: (GalaxiesML: ``image`` of (N, 5, H, W) in HSC's g, r, i, z, y, ``object_id``); empty: none.
    layout: str = ""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(repr(k) for k in LAYOUTS)}, got {self.layout!r}")


#: The survey layouts of :class:`HDF5Config`.
LAYOUTS = ("", "mmu", "galaxiesml")


def _h5_attr(objs: tuple[Any, ...], *names: str) -> Any:
    """The first attribute called one of ``names`` on the first of ``objs`` that has one."""
    for obj in objs:
        for name in names:
            if name in obj.attrs:
                return obj.attrs[name]
    return None


def _text(value: Any) -> str | None:
    """A non-empty string attribute, stripped; None for anything else."""
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode(errors="replace")
    return value.strip() if isinstance(value, str) and value.strip() else None


class HDF5Reader(Reader):
    """Arrays of images in HDF5 files: (N, H, W), (N, C, H, W) or (N, H, W, C)."""

    name = "hdf5"
    Config = HDF5Config
    patterns = ("*.h5", "*.hdf5", "*.hdf", "*.he5")

    def read(self, path: Path) -> Iterator[Item]:
        for label, image, bands, _ in self.read_with_units(path):
            yield label, image, bands

    def read_with_units(self, path: Path) -> Iterator[tuple[str, np.ndarray, tuple[str, ...] | None, FileUnits]]:
        """Like :meth:`read`, with the units the file declares.

        Band names come from a ``bands`` attribute of the dataset (or of the
        file); the pixel scale from a ``pixel_scale`` attribute (``"0.2
        arcsec"``) and the flux unit from ``flux_unit`` or ``BUNIT``.
        """
        h5py = require("h5py", "the hdf5 reader", "pip install 'galaug[astro]'")

        path = Path(path)
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(f"not a readable HDF5 file ({exc})") from None
        with f:
            if self.config.layout:
                yield from self._layout(f, path)
                return
            ds = f.get(self.config.dataset)
            if not isinstance(ds, h5py.Dataset):
                found: list[str] = []
                f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
                listed = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "") or "none"
                raise ValueError(f"no dataset {self.config.dataset!r} (datasets: {listed}); set dataset=NAME")
            bands = _clean_names(_h5_attr((ds, f), "bands"))
            scale = _text(_h5_attr((ds, f), "pixel_scale"))
            try:
                quantity = u.Quantity(scale) if scale else None
            except (TypeError, ValueError):
                quantity = None
            if quantity is not None and quantity.unit.physical_type not in ("angle", "length"):
                quantity = None
            flux = _text(_h5_attr((ds, f), "flux_unit", "BUNIT"))
            yield from _iter_stack(path.name, ds.shape, ds.dtype, lambda a, b: ds[a:b],
                                   self.config.band_axis, bands, FileUnits(quantity, flux))


    def _layout(self, f: Any, path: Path) -> Iterator[tuple[str, np.ndarray, tuple[str, ...] | None, FileUnits]]:
        """The images of a survey layout: bands, pixel scale and object ids from its own members."""
        import h5py

        def member(*names: str) -> Any:
            for name in names:
                if isinstance(f.get(name), h5py.Dataset):
                    return f[name]
            raise ValueError(f"no {' or '.join(names)} member, so not a {self.config.layout} file")

        if self.config.layout == "mmu":
            images = member("image_array", "image_flux")
            names = np.asarray(member("image_band")[()])
            if names.ndim != 2 or len(names) != images.shape[0] or names.shape[1] != images.shape[1]:
                raise ValueError(f"image_band of shape {names.shape} does not match images of {images.shape}")
            if not (names == names[:1]).all():
                raise ValueError("objects with different bands (image_band differs between rows)")
            bands = _clean_names(list(names[0]))
            scales = np.asarray(member("image_scale")[()], dtype=np.float64)
            finite = scales[np.isfinite(scales)]
            if finite.size and not np.allclose(finite, finite.flat[0], rtol=1e-6):
                raise ValueError(f"image_scale ranges from {finite.min():g} to {finite.max():g} arcsec: "
                                 "one dataset has one pixel scale")
            scale = float(finite.flat[0]) * u.arcsec if finite.size and finite.flat[0] > 0 else None
        else:
            images = member("image")
            if images.ndim != 4 or images.shape[1] != 5:
                raise ValueError(f"image of shape {images.shape}; GalaxiesML's is (N, 5, H, W)")
            bands, scale = ("g", "r", "i", "z", "y"), None
            pixel_scale = _text(_h5_attr((images, f), "pixel_scale"))
            if pixel_scale:
                scale = u.Quantity(pixel_scale)
        ids = f.get("object_id")
        ids = np.asarray(ids[()]) if isinstance(ids, h5py.Dataset) and len(ids) == images.shape[0] else None
        units = FileUnits(scale, _text(_h5_attr((images, f), "flux_unit", "BUNIT")))
        for label, image, b, unit in _iter_stack(path.name, images.shape, images.dtype, lambda a, z: images[a:z],
                                                 "first", bands, units):
            if ids is not None:
                row = int(label.rpartition("[")[2][:-1])
                label = f"{label} {_text(ids[row]) or ids[row]}"
            yield label, image, b, unit


@dataclasses.dataclass
class NpyConfig:
    """Options of the ``npy`` reader."""

    #: Array of an ``.npz`` file; empty: its only array, else ``images``.
    key: str = ""
    #: Band axis of a 4-d array: ``first`` for (N, C, H, W), ``last`` for
    #: (N, H, W, C); ``auto`` takes the one of 16 or fewer.
    band_axis: BandAxis = "auto"


def _npz_member(zf: zipfile.ZipFile, key: str) -> str:
    names = [n[: -len(".npy")] for n in zf.namelist() if n.endswith(".npy")]
    if key:
        if key not in names:
            raise ValueError(f"no array {key!r} (arrays: {', '.join(names) or 'none'}); set key=NAME")
        return key + ".npy"
    if len(names) == 1:
        return names[0] + ".npy"
    if "images" in names:
        return "images.npy"
    raise ValueError(f"{len(names)} arrays ({', '.join(names) or 'none'}) and none called 'images'; set key=NAME")


class NpyReader(Reader):
    """NumPy arrays of images: ``.npy`` (memory-mapped) or an array of an ``.npz``."""

    name = "npy"
    Config = NpyConfig
    patterns = ("*.npy", "*.npz")

    def read(self, path: Path) -> Iterator[Item]:
        for label, image, bands, _ in self.read_with_units(path):
            yield label, image, bands

    def read_with_units(self, path: Path) -> Iterator[tuple[str, np.ndarray, tuple[str, ...] | None, FileUnits]]:
        """Like :meth:`read`; NumPy files declare no bands or units."""
        path = Path(path)
        if path.suffix.lower() != ".npz":
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except EOFError as exc:
                raise ValueError(f"not a readable .npy file ({exc})") from None
            yield from _iter_stack(path.name, arr.shape, arr.dtype, lambda a, b: arr[a:b],
                                   self.config.band_axis, None, _NO_UNITS)
            return
        try:
            with zipfile.ZipFile(path) as zf:
                member = _npz_member(zf, self.config.key)
                with zf.open(member) as f:
                    yield from _iter_stack(f"{path.name}:{member[:-4]}", *_npy_stream(f),
                                           self.config.band_axis, None, _NO_UNITS)
        except zipfile.BadZipFile as exc:
            raise ValueError(f"not a readable .npz file ({exc})") from None


def _npy_stream(f: Any) -> tuple[tuple[int, ...], np.dtype, Callable[[int, int], np.ndarray]]:
    """Shape, dtype and a sequential row reader of the ``.npy`` stream ``f`` (an npz member)."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version} is not supported")
    if dtype.hasobject:
        raise ValueError("the array holds Python objects; only numbers can be read")
    row_bytes = math.prod(shape[1:]) * dtype.itemsize
    if fortran:  # rows are not contiguous: read the whole array
        whole = np.frombuffer(_read_exactly(f, math.prod(shape) * dtype.itemsize), dtype).reshape(shape, order="F")
        return shape, dtype, lambda a, b: whole[a:b]

    def rows(start: int, stop: int) -> np.ndarray:
        data = _read_exactly(f, (stop - start) * row_bytes)
        return np.frombuffer(data, dtype).reshape((stop - start, *shape[1:]))

    return shape, dtype, rows


def _read_exactly(f: Any, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"truncated: expected {n} more bytes of array data, got {len(data)}")
    return data
