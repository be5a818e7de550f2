"""Constants and attribute helpers of the dataset format (see docs/dataset-format.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np

FORMAT_VERSION = 2
#: Versions this galaug reads. 2 added codecs other than zstd, small members chunked in many rows of
#: images (a multiple of them) and ``clean`` stored by reference (``clean_ref``, ``clean_rows``).
SUPPORTED_VERSIONS = (1, 2)
ATTR = "galaug"
ORIGIN_NAMES = ("real", "generated")
REQUIRED = ("images", "origin", "index")
#: The columns of the ``objects`` table, stored as ``objects/<column>`` (see :mod:`galaug.data.objects`).
OBJECT_MEMBERS = tuple(f"objects/{c}" for c in ("id", "source", "hdu", "ra", "dec", "wcs", "frame"))
OPTIONAL = ("params", "latents", "z", "clean", "clean_rows", "ivar", "mask") + OBJECT_MEMBERS
#: Members whose rows are images: chunked in the rows of ``images``; the others in many more (SMALL_CHUNK_BYTES).
IMAGE_MEMBERS = ("images", "clean", "ivar", "mask")
#: Per-row fields a copy of some rows carries besides images, origin and index (``objects``: the table's columns).
PER_ROW = ("params", "latents", "z", "clean", "clean_rows", "ivar", "mask", "objects")
DTYPES = {
    "images": "float32",
    "origin": "uint8",
    "index": "int64",
    "params": "float32",
    "latents": "float32",
    "z": "float32",
    "clean": "float32",
    "clean_rows": "int64",
    "ivar": "float32",
    "mask": "uint16",
    "objects/id": "uint8",
    "objects/source": "int32",
    "objects/hdu": "int32",
    "objects/ra": "float64",
    "objects/dec": "float64",
    "objects/wcs": "float64",
    "objects/frame": "int32",
}
DEFAULT_CHUNK_BYTES = 2 * 2**20
#: Target size of a chunk of a small member (origin, index, params, ...): one file for many chunks of images.
SMALL_CHUNK_BYTES = 2**20
#: Attribute key: true when every chunk of every member is stored (none left implicit as fill value),
#: so that readers can treat a missing chunk file as damage.
EVERY_CHUNK_STORED = "every_chunk_stored"


def pixel_scale_attr(value: Any) -> dict[str, Any] | None:
    """Normalise a pixel scale to ``{"value", "unit"}``; it needs an angle or length unit."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value["value"] * u.Unit(value["unit"])
    if isinstance(value, str):
        try:
            value = u.Quantity(value)
        except (TypeError, ValueError):
            raise ValueError(f"pixel scale {value!r} is not a quantity like '0.2 arcsec'") from None
    if not isinstance(value, u.Quantity):
        raise ValueError(f"pixel scale {value!r} needs a unit, e.g. 0.2 * u.arcsec or '0.5 kpc'")
    if value.unit.physical_type not in ("angle", "length"):
        raise ValueError(f"pixel scale {value} must be an angle or a length per pixel")
    if not (value.isscalar and float(value.value) > 0):
        raise ValueError(f"pixel scale {value} must be a positive scalar")
    return {"value": float(value.value), "unit": value.unit.to_string()}


def pixel_scale_quantity(attr: dict[str, Any] | None) -> u.Quantity | None:
    """The astropy Quantity of a ``{"value", "unit"}`` pixel scale attribute (``None`` stays ``None``)."""
    return None if attr is None else attr["value"] * u.Unit(attr["unit"])


def flux_unit_attr(value: Any) -> str | None:
    """Validate a flux unit (``"nJy"``, ``"adu"``, ``"electron"``...); ``None`` means unknown."""
    if value is None:
        return None
    try:
        return u.Unit(value, parse_strict="raise").to_string()
    except (TypeError, ValueError):
        raise ValueError(f"flux unit {value!r} is not a unit astropy understands") from None


def same_unit(a: str, b: str) -> bool:
    """Whether two flux-unit strings name the same unit (``nJy`` and ``nanojansky``); unparsable ones must match."""
    try:
        return a == b or u.Unit(a, parse_strict="raise") == u.Unit(b, parse_strict="raise")
    except (TypeError, ValueError):
        return False


def chunk_rows(sample_bytes: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Rows per chunk so that a chunk of images holds about ``chunk_bytes``."""
    return max(1, chunk_bytes // max(1, sample_bytes))


def small_chunk_rows(name: str, tail: tuple[int, ...], image_rows: int, n: int | None) -> int:
    """Rows per chunk of a small member: a multiple of ``image_rows`` holding about SMALL_CHUNK_BYTES,
    and no more rows than the dataset needs when ``n`` is known (at most 16 chunks of images when it is
    not, since the last chunk is stored whole)."""
    row_bytes = np.dtype(DTYPES[name]).itemsize * int(np.prod(tail, dtype=np.int64))
    k = max(1, SMALL_CHUNK_BYTES // max(1, row_bytes * image_rows))
    k = min(k, max(1, -(-n // image_rows))) if n is not None else min(k, 16)
    return k * image_rows


# -- codecs ------------------------------------------------------------------------------------------------

#: Chunk codecs by name, each with a checksum so that a damaged chunk is an error, not data. Measured in
#: docs/dataset-format.md (benchmarks/codecs.py): float galaxy images compress by 7-12% at best, and
#: uncompressed chunks read 2-3.5x faster, so "raw" is the default.
CODECS = {
    "raw": "uncompressed, CRC32C checksum",
    "zstd": "zstd level 0 with its checksum (the default before galaug 0.2)",
    "blosc-lz4": "Blosc LZ4 with byte shuffle, CRC32C checksum",
    "blosc-zstd": "Blosc zstd level 1 with bit shuffle, CRC32C checksum",
}
_default_codec = "raw"


def check_codec(name: str | None) -> str:
    """``name`` if it is a codec of :data:`CODECS` (None: the default); else a ValueError listing them."""
    if name is None:
        return _default_codec
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r} (codecs: {', '.join(CODECS)})")
    return name


def set_default_codec(name: str) -> None:
    """The codec of every dataset this process writes without naming one (``--codec``)."""
    global _default_codec
    _default_codec = check_codec(name)


def codec_arrays(name: str) -> dict[str, Any]:
    """The ``compressors`` argument of ``zarr.create_array`` for codec ``name``."""
    from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

    return {"compressors": {
        "raw": lambda: (Crc32cCodec(),),
        "zstd": lambda: (ZstdCodec(level=0, checksum=True),),
        "blosc-lz4": lambda: (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec()),
        "blosc-zstd": lambda: (BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle"), Crc32cCodec()),
    }[name]()}


# -- clean images by reference ------------------------------------------------------------------------------

def clean_ref_attr(ref: dict[str, Any], out: Path) -> dict[str, Any]:
    """The ``clean_ref`` attribute of a dataset written at ``out`` that refers to ``ref["path"]``.

    Stores the path relative to ``out``'s folder (found again when both move
    together) and the absolute one, the referenced dataset's id and member.
    """
    target = Path(ref["path"]).resolve()
    relative = os.path.relpath(target, Path(out).resolve().parent)
    member = ref.get("member", "images")
    if member not in IMAGE_MEMBERS:
        raise ValueError(f"clean_ref member must be one of {IMAGE_MEMBERS}, got {member!r}")
    return {"path": Path(relative).as_posix(), "absolute": target.as_posix(), "id": str(ref["id"]),
            "member": member}
