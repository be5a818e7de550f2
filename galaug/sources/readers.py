"""File readers: FITS images, HDF5 and NumPy arrays, the sources behind ``galaug ingest``.

Every reader yields ``(label, image, bands)`` with ``image`` a (C, H, W)
float32 array (:meth:`galaug.kinds.Reader.read`). They also offer
:meth:`read_with_units`, which adds the pixel scale and flux unit a file
declares, so that ingest records them, and :meth:`read_items`, which adds
what comes with an image (:class:`Extras`): its inverse variance and mask
where the file has them (FITS ``ERR``/``DQ`` extensions, the Multimodal
Universe's ``image_ivar``/``image_mask``) and its identity (file, HDU,
object id, RA/Dec, WCS).

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

from galaug.data.objects import Identity, celestial_wcs
from galaug.errors import describe, one_line, require
from galaug.kinds import Reader

__all__ = [
    "Extras",
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


@dataclasses.dataclass
class Extras:
    """What comes with an image besides its pixels; each part None where the file has none.

    ``ivar`` is the inverse variance (C, H, W) float32, 0 where unknown;
    ``mask`` (C, H, W) uint16 bit flags, nonzero = bad; ``identity`` says
    which object the image is (:class:`galaug.data.objects.Identity`);
    ``notes`` what was changed on the way (flags folded into 16 bits).
    """

    ivar: np.ndarray | None = None
    mask: np.ndarray | None = None
    identity: Identity | None = None
    notes: tuple[str, ...] = ()


def ivar_from_err(err: np.ndarray) -> np.ndarray:
    """Inverse variance ``1 / err**2`` of an error (standard deviation) map; 0 where ``err`` <= 0 or is not finite."""
    err = np.asarray(err, dtype=np.float64)
    good = np.isfinite(err) & (err > 0)
    with np.errstate(over="ignore"):
        ivar = np.where(good, 1.0 / np.where(good, err, 1.0) ** 2, 0.0).astype(np.float32)
    ivar[~np.isfinite(ivar)] = 0  # an error so small that 1/err^2 overflows float32 says nothing usable
    return ivar


def clean_ivar(ivar: np.ndarray) -> np.ndarray:
    """An inverse variance map as float32, with negative and non-finite values set to 0 (unknown)."""
    ivar = np.asarray(ivar, dtype=np.float32)
    return np.where(np.isfinite(ivar) & (ivar > 0), ivar, np.float32(0))


#: Flag set on a pixel whose flags lie only above the 16 bits a mask holds (JWST's 32-bit DQ).
HIGH_FLAG = 1 << 15


def mask_from_flags(flags: np.ndarray) -> tuple[np.ndarray, bool]:
    """Bit flags (integers or booleans, nonzero = bad) as uint16, and whether flags above bit 15 were folded.

    The low 16 bits are kept; a pixel flagged only above them gets
    :data:`HIGH_FLAG`, so that it stays bad. Negative integers are read as
    their two's complement (a signed 16-bit DQ's bit 15).
    """
    flags = np.asarray(flags)
    if flags.dtype == np.bool_:
        return flags.astype(np.uint16), False
    if np.issubdtype(flags.dtype, np.floating):
        if not (np.isfinite(flags).all() and (flags == np.round(flags)).all() and (flags >= 0).all()):
            raise ValueError("the mask holds values that are not non-negative whole numbers (bit flags)")
        flags = flags.astype(np.uint64)
    elif not np.issubdtype(flags.dtype, np.integer):
        raise ValueError(f"a mask of type {flags.dtype} holds no bit flags")
    elif np.issubdtype(flags.dtype, np.signedinteger):
        flags = flags.astype(flags.dtype.newbyteorder("=")).view(f"u{flags.dtype.itemsize}")
    flags = flags.astype(np.uint64)
    low = (flags & 0xFFFF).astype(np.uint16)
    high = (flags >> 16) != 0
    folded = bool(high.any())
    if folded:
        low[high] |= HIGH_FLAG
    return low, folded


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
    #: EXTNAME of the science images when a file has several kinds (``SCI``).
    sci: str = "SCI"
    #: EXTNAME of the error maps (standard deviations) stored as ``ivar = 1 / ERR**2``; empty: none read.
    err: str = "ERR"
    #: EXTNAME of the data-quality flags stored as ``mask`` (nonzero = bad); empty: none read.
    dq: str = "DQ"

    def __post_init__(self) -> None:
        for key in ("sci", "err", "dq"):
            value = str(getattr(self, key)).strip().upper()
            if "," in value:
                raise ValueError(f"{key} must be an EXTNAME (no EXTVER; the science image's is used), got {value!r}")
            setattr(self, key, value)
        if not self.sci:
            raise ValueError("sci must be an EXTNAME, e.g. SCI")


#: The pixel types of the FITS standard.
_FITS_BITPIX = (8, 16, 32, 64, -32, -64)
#: EXTNAMEs of image HDUs that accompany a science image rather than hold a band: errors, data
#: quality, weights, variances, exposure and context maps (HST: ERR, DQ, WHT, CTX, SAMP, TIME; JWST: ERR, DQ,
#: VAR_POISSON, VAR_RNOISE, VAR_FLAT, CON, AREA; others: IVM, RMS, VAR, MASK, EXP).
AUXILIARY_EXTNAMES = frozenset({"ERR", "DQ", "WHT", "CTX", "CON", "SAMP", "TIME", "AREA", "VAR_POISSON",
                                "VAR_RNOISE", "VAR_FLAT", "IVM", "RMS", "VAR", "MASK", "EXP", "EXPTIME", "IVAR"})
#: EXTNAMEs of the inverse variance and mask ``galaug export`` writes: read as such when a file has them.
GALAUG_IVAR, GALAUG_MASK = "IVAR", "MASK"
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


def _fits_float(hdr: Any, key: str) -> float | None:
    """A finite number under ``key``, else None."""
    value = hdr.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _fits_id(*headers: Any) -> str:
    """An integer ``OBJID`` (as many catalogues write it) as text; empty when there is none."""
    for hdr in headers:
        value = hdr.get("OBJID")
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return ""


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

    def read_items(self, path: Path) -> Iterator[tuple[str, np.ndarray, tuple[str, ...] | None, FileUnits, Extras]]:
        """Like :meth:`read_with_units`, with the image's :class:`Extras` (see :meth:`read_full`)."""
        image, bands, units, _, extras = self.read_full(path)
        yield Path(path).name, image, bands, units, extras

    def read_frame(self, path: Path) -> tuple[np.ndarray, tuple[str, ...] | None, FileUnits, Any]:
        """The image (C, H, W) of one file, its band names, units, and its HDU's header (for a WCS).

        See :meth:`read_full`, which also reads the error and quality maps.
        """
        image, bands, units, header, _ = self.read_full(path)
        return image, bands, units, header

    def read_full(self, path: Path) -> tuple[np.ndarray, tuple[str, ...] | None, FileUnits, Any, Extras]:
        """The image (C, H, W) of one file, its band names, units, its HDU's header (for a WCS) and :class:`Extras`.

        One file is one object: the image of the only science HDU with data
        (2-d, or a 3-d cube), or, when several hold data, one band per HDU.
        Tables, empty HDUs and error, quality and weight extensions
        (:data:`AUXILIARY_EXTNAMES`) are skipped; where ``SCI`` extensions
        exist only they are read; ``hdu`` in the config picks one HDU.
        Band names come from ``BAND1``.., ``BANDS`` (a comma list),
        ``FILTER``, ``BAND``, ``FILTNAM1``, ``FILTER1``/``FILTER2`` (not
        ``CLEAR``), in the image's header and then the primary one. Scaled
        integers (``BSCALE``/``BZERO``) are read without memory-mapping.

        The extras: the error map (EXTNAME ``err``, ``ERR``) of each science
        HDU, the one with its EXTVER, as ``ivar = 1 / ERR**2`` (0 where ERR
        <= 0 or is not finite), and its quality flags (``dq``, ``DQ``) as the
        mask; a file written by ``galaug export`` gives its ``IVAR`` and
        ``MASK`` extensions. The identity: the file, the HDU, the object id
        (``OBJID``), RA/Dec (``RA_OBJ``/``DEC_OBJ``) and the celestial WCS of
        the image's header.
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
                        companions = self._companions(hdul, hdus)
                        if memmap and any(k in h.header for hs in companions.values() for h in hs for k in _SCALING):
                            memmap = False
                            continue
                        for h in (h for hs in companions.values() for h in hs):
                            _fits_size_check(h, file_size, gzipped)
                        primary = hdul[0].header
                        axis = None
                        if len(hdus) == 1:
                            image, bands, axis = self._single(hdus[0], primary)
                        else:
                            image, bands = self._per_band(hdus)
                        headers = (hdus[0].header, primary)  # the image's, then the primary
                        scales = [s for s in map(_fits_pixel_scale, headers) if s is not None]
                        units = FileUnits(scales[0] if scales else None,
                                          _fits_text(headers[0], "BUNIT") or _fits_text(headers[1], "BUNIT"))
                        header = hdus[0].header.copy()
                        extras = self._extras(path, hdus, companions, axis, image.shape, header, primary)
                    break
        except (OSError, EOFError, IndexError, KeyError, TypeError) as exc:
            # astropy reports a broken file through any of these
            raise ValueError(f"not a readable FITS file ({describe(exc)}"
                             f"{_astropy_note(caught, AstropyUserWarning)})") from None
        return image, bands, units, header, extras

    def _companions(self, hdul: Any, hdus: list[Any]) -> dict[str, list[Any]]:
        """The error, quality, inverse-variance and mask HDUs of the science ``hdus``, one per HDU (same EXTVER),
        by kind; a kind is left out unless every science HDU has one."""
        names = {"ivar": GALAUG_IVAR, "mask": GALAUG_MASK, "err": self.config.err, "dq": self.config.dq}
        chosen = {id(h) for h in hdus}
        out: dict[str, list[Any]] = {}
        for kind, name in names.items():
            if not name:
                continue
            found = []
            for h in hdus:
                match = [a for a in hdul if a.is_image and id(a) not in chosen and a.name.upper() == name
                         and a.ver == h.ver and math.prod(_fits_axes(a.header) or [0]) > 0]
                if match:
                    found.append(match[0])
            if found and len(found) == len(hdus) and len({id(a) for a in found}) == len(found):
                out[kind] = found  # one of its own for every science HDU (bands named g, r: no shared ERR)
        if "ivar" in out:  # galaug's own inverse variance, where a file has it, rather than an error map
            out.pop("err", None)
        if "mask" in out:
            out.pop("dq", None)
        return out

    def _extras(self, path: Path, hdus: list[Any], companions: dict[str, list[Any]], axis: int | None,
                shape: tuple[int, ...], header: Any, primary: Any) -> Extras:
        """The :class:`Extras` of the image read from ``hdus``: its maps, each shaped like the image, and identity."""
        def planes(kind: str) -> np.ndarray:
            maps = companions[kind]
            for science, hdu in zip(hdus, maps):
                want, got = _fits_axes(science.header), _fits_axes(hdu.header)
                if want != got:
                    raise ValueError(f"{hdu.name},{hdu.ver} has {' x '.join(map(str, got[::-1]))} pixels, "
                                     f"but its science image {' x '.join(map(str, want[::-1]))}")
                _check_real(hdu.data.dtype)
            if len(maps) > 1:
                return np.stack([np.asarray(h.data) for h in maps])
            data = np.asarray(maps[0].data)
            return data[None] if data.ndim == 2 else np.moveaxis(data, axis, 0)

        ivar = mask = None
        notes: list[str] = []
        if "ivar" in companions:
            ivar = clean_ivar(planes("ivar"))
        elif "err" in companions:
            ivar = ivar_from_err(planes("err"))
        kind = "mask" if "mask" in companions else "dq" if "dq" in companions else None
        if kind is not None:
            mask, folded = mask_from_flags(planes(kind))
            if folded:
                notes.append(f"{companions[kind][0].name} flags above bit 15 folded into bit 15")
        hdu = "+".join(f"{h.name},{h.ver}" if h.name else "PRIMARY" for h in hdus)
        position = [(_fits_float(h, "RA_OBJ"), _fits_float(h, "DEC_OBJ")) for h in (header, primary)]
        ra, dec = next((p for p in position if None not in p), (math.nan, math.nan))
        identity = Identity(id=_fits_text(header, "OBJID") or _fits_text(primary, "OBJID") or _fits_id(header, primary),
                            source=str(path), hdu=hdu, ra=ra, dec=dec, wcs=celestial_wcs(header))
        return Extras(ivar, mask, identity, tuple(notes))

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
            auxiliary = AUXILIARY_EXTNAMES | {n for n in (self.config.err, self.config.dq) if n}
            chosen = [h for h in with_data if h.name.upper() not in auxiliary or h.name.upper() == self.config.sci]
            chosen = [h for h in chosen if h.name.upper() == self.config.sci] or chosen
            if not chosen:
                raise ValueError(f"no science image, only {listed} (choose one with hdu=NAME)")
        names = {h.name.upper() for h in chosen}
        if len(chosen) > 1 and len(names) == 1 and _all_names([_band_keyword(h.header) for h in chosen]) is None:
            # several chips or exposures of one extension name (ACS/WFC's SCI,1 and SCI,2), not bands
            name = chosen[0].name
            raise ValueError(f"{len(chosen)} {name} extensions ({', '.join(f'{name},{h.ver}' for h in chosen)}) "
                             f"name no distinct bands: choose one with hdu={name},{chosen[0].ver}")
        return chosen

    def _single(self, hdu: Any, primary: Any) -> tuple[np.ndarray, tuple[str, ...] | None, int | None]:
        """The image of one HDU, its band names, and the band axis of a cube (None for a 2-d image)."""
        data, hdr = hdu.data, hdu.header
        _check_real(data.dtype)
        if data.ndim == 2:
            name = _fits_text(hdr, "BAND1") or (_bands_list(hdr, 1) or [None])[0] or _band_keyword(hdr, primary)
            return np.array(data[None], dtype=np.float32), _all_names([name]), None
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
        return image, _all_names(names), axis

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
                band_axis: str, bands: tuple[str, ...] | None, units: FileUnits,
                maps: dict[str, Callable[[int, int], np.ndarray]] | None = None) -> Iterator[Any]:
    """Yield the images of an array of shape (H, W), (N, H, W), (N, C, H, W) or (N, H, W, C).

    ``rows(start, stop)`` reads a slice along the first axis; about
    :data:`READ_BYTES` are read at a time. With ``maps`` (arrays of the
    same shape, read the same way: an inverse variance, a mask), each item
    has a fifth element: those maps of the image, (C, H, W) each.
    """
    _check_real(dtype)
    if len(shape) == 2:  # a single image
        image = np.array(rows(0, shape[0]), dtype=np.float32)[None]
        yield (label, image, bands, units) + (() if maps is None else
                                              ({k: np.asarray(m(0, shape[0]))[None] for k, m in maps.items()},))
        return
    if len(shape) == 3:
        axis = None
    elif len(shape) == 4:
        axis = _band_axis(shape, band_axis, 1, 3)
    else:
        raise ValueError(f"array of shape {tuple(shape)}; expected (N, H, W), (N, C, H, W) or (N, H, W, C)")
    step = max(1, READ_BYTES // max(1, math.prod(shape[1:]) * dtype.itemsize))

    def images(read: Callable[[int, int], np.ndarray], start: int, dtype: Any) -> np.ndarray:
        block = np.asarray(read(start, min(start + step, shape[0])), dtype=dtype)
        return block[:, None] if axis is None else np.moveaxis(block, axis, 1)  # (n, C, H, W)

    for start in range(0, shape[0], step):
        block = images(rows, start, np.float32)
        extra = {kind: images(read, start, None) for kind, read in (maps or {}).items()}
        for k, image in enumerate(block):
            item = (f"{label}[{start + k}]", np.ascontiguousarray(image), bands, units)
            yield item if maps is None else item + ({kind: m[k] for kind, m in extra.items()},)


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
        for label, image, bands, units, _ in self._items(path, extras=False):
            yield label, image, bands, units

    def read_items(self, path: Path) -> Iterator[tuple[str, np.ndarray, tuple[str, ...] | None, FileUnits, Extras]]:
        """Like :meth:`read_with_units`, with each image's :class:`Extras`: the file and dataset; with
        ``layout="mmu"`` also ``image_ivar`` and ``image_mask`` (when the file has them), ``object_id``, ``ra``
        and ``dec``; with ``layout="galaxiesml"`` ``object_id``, ``ra`` and ``dec``."""
        yield from self._items(path, extras=True)

    def _items(self, path: Path, *, extras: bool) -> Iterator[tuple[str, np.ndarray, Any, FileUnits, Any]]:
        h5py = require("h5py", "the hdf5 reader", "pip install 'galaug[astro]'")

        path = Path(path)
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(f"not a readable HDF5 file ({exc})") from None
        with f:
            if self.config.layout:
                yield from self._layout(f, path, extras)
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
            identity = Identity(source=str(path), hdu=ds.name.lstrip("/")) if extras else None
            for item in _iter_stack(path.name, ds.shape, ds.dtype, lambda a, b: ds[a:b],
                                    self.config.band_axis, bands, FileUnits(quantity, flux)):
                yield (*item, Extras(identity=identity))

    def _layout(self, f: Any, path: Path, extras: bool) -> Iterator[tuple[str, np.ndarray, Any, FileUnits, Any]]:
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

        def column(name: str) -> np.ndarray | None:
            found = f.get(name)
            ok = isinstance(found, h5py.Dataset) and found.ndim == 1 and len(found) == images.shape[0]
            return np.asarray(found[()]) if ok else None

        ids = column("object_id")
        maps: dict[str, Callable[[int, int], np.ndarray]] = {}
        if extras and self.config.layout == "mmu":
            for kind, name in (("ivar", "image_ivar"), ("mask", "image_mask")):
                found = f.get(name)
                if isinstance(found, h5py.Dataset):
                    if found.shape != images.shape:
                        raise ValueError(f"{name} of shape {found.shape} does not match images of {images.shape}")
                    maps[kind] = lambda a, z, found=found: found[a:z]
        ra, dec = (column("ra"), column("dec")) if extras else (None, None)
        units = FileUnits(scale, _text(_h5_attr((images, f), "flux_unit", "BUNIT")))
        hdu = images.name.lstrip("/")
        for label, image, b, unit, *rest in _iter_stack(path.name, images.shape, images.dtype,
                                                        lambda a, z: images[a:z], "first", bands, units, maps or None):
            row = int(label.rpartition("[")[2][:-1])
            name = None if ids is None else (_text(ids[row]) or str(ids[row]))
            if name is not None:
                label = f"{label} {name}"
            if not extras:
                yield label, image, b, unit, None
                continue
            found = rest[0] if rest else {}
            mask, folded = mask_from_flags(found["mask"]) if "mask" in found else (None, False)
            position = (float(ra[row]), float(dec[row])) if ra is not None and dec is not None else (math.nan,) * 2
            identity = Identity(id=name or "", source=str(path), hdu=hdu, ra=position[0], dec=position[1])
            yield label, image, b, unit, Extras(
                ivar=clean_ivar(found["ivar"]) if "ivar" in found else None, mask=mask, identity=identity,
                notes=("image_mask flags above bit 15 folded into bit 15",) if folded else ())


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
