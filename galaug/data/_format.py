"""Constants and attribute helpers of the dataset format (see docs/dataset-format.md)."""

from __future__ import annotations

from typing import Any

import astropy.units as u

FORMAT_VERSION = 1
ATTR = "galaug"
ORIGIN_NAMES = ("real", "generated")
REQUIRED = ("images", "origin", "index")
OPTIONAL = ("params", "latents", "z", "clean")
DTYPES = {
    "images": "float32",
    "origin": "uint8",
    "index": "int64",
    "params": "float32",
    "latents": "float32",
    "z": "float32",
    "clean": "float32",
}
DEFAULT_CHUNK_BYTES = 2 * 2**20
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
