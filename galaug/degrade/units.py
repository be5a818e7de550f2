"""Lengths of degradations: pixels, or an angle converted with the images' pixel scale.

A length parameter of a degradation (a PSF's ``sigma`` and ``fwhm``,
``resample``'s ``scale``) takes

- a number: pixels of the image the step receives (``fwhm=4``);
- a number with ``px`` (or ``pix``, ``pixel``, ``pixels``): the same (``fwhm=4px``);
- a number with an angle unit astropy knows (``fwhm=0.8arcsec``, ``250mas``,
  ``"0.8 arcsec"``), or a length (``1kpc``) for data whose pixel scale is a
  length: kept as written (canonically ``0.8arcsec``) until the pipeline is
  put on the images' pixel grid with :meth:`galaug.degrade.Pipeline.in_pixels`;
- from Python, an ``astropy.units.Quantity`` of either kind (``0.8 * u.arcsec``,
  ``4 * u.pix``).

A pixel length is stored as a float, so ``fwhm=4px`` is the very same
degradation as ``fwhm=4``. astropy is imported only for a value with a unit
other than pixels.
"""

from __future__ import annotations

import math
import re
from typing import Any

from galaug.degrade._common import check_number
from galaug.errors import ConfigError

__all__ = ["PIXEL_UNITS", "check_length", "check_lengths", "is_angle", "length_text", "to_pixels"]

#: Unit names that mean pixels.
PIXEL_UNITS = ("px", "pix", "pixel", "pixels")
_LENGTH = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]\w*)?\s*")


def _unit(name: str, text: str, shown: str) -> Any:
    """The astropy unit ``text`` of an angle or a length; a ValueError starting with ``name`` otherwise."""
    import astropy.units as u

    try:
        unit = u.Unit(text, parse_strict="raise")
    except (TypeError, ValueError):
        raise ValueError(f"{name} {shown!r}: {text!r} is not a unit (use px, arcsec, mas, arcmin, deg)") from None
    if str(unit.physical_type) not in ("angle", "length"):
        raise ValueError(f"{name} {shown!r} must be in pixels or an angle (arcsec), not {unit.physical_type}")
    return unit


def check_length(name: str, value: Any, *, minimum: float = 0.0, strict: bool = True,
                 required: bool = True) -> float | str | None:
    """``value`` as a float of pixels, or as the canonical text of an angle (``"0.8arcsec"``).

    Parameters
    ----------
    name : str
        The parameter, at the start of every error message (the pipeline
        parser points at that key's value).
    value : number, str or astropy.units.Quantity
        See the module docstring.
    minimum, strict
        The smallest number of pixels (``strict``: excluded). An angle must
        be > 0; its pixels are checked when it is converted.
    required : bool
        Whether None is refused.

    Raises
    ------
    ValueError
        Naming ``name``: not a number, an unknown unit or one that is not an
        angle, length or pixels, a value out of range.
    """
    if value is None:
        if required:
            raise ValueError(f"{name} is required")
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number of pixels or an angle, got {value!r}")
    if isinstance(value, (int, float)):
        return check_number(name, value, minimum=minimum, strict=strict)
    if isinstance(value, str):
        try:  # "nan", "inf": a number, refused as one
            return check_number(name, float(value), minimum=minimum, strict=strict)
        except ValueError as exc:
            if str(exc).startswith(name):
                raise
        match = _LENGTH.fullmatch(value)
        if match is None:
            raise ValueError(f"{name} must be a number of pixels or an angle like 0.8arcsec, got {value!r}")
        number, unit = float(match.group(1)), match.group(2)
        if unit is None or unit.lower() in PIXEL_UNITS:
            return check_number(name, number, minimum=minimum, strict=strict)
        unit = _unit(name, unit, value)
    elif hasattr(value, "unit") and hasattr(value, "value"):  # an astropy Quantity
        import astropy.units as u

        if not getattr(value, "isscalar", False):
            raise ValueError(f"{name} must be one quantity; give one per band as a list, got {value!r}")
        if value.unit == u.pix:
            return check_number(name, float(value.value), minimum=minimum, strict=strict)
        number = float(value.value)
        unit = _unit(name, value.unit.to_string(), str(value))
    else:
        raise ValueError(f"{name} must be a number of pixels or an angle like 0.8arcsec, got {value!r}")
    try:  # the minimum is in pixels: checked again once converted (Pipeline.in_pixels)
        check_number(name, number)
    except ValueError as exc:
        raise ValueError(f"{exc} {unit.to_string()}") from None
    return length_text(number, unit.to_string())


def check_lengths(name: str, value: Any, *, minimum: float = 0.0, strict: bool = True,
                  required: bool = True) -> float | str | tuple[float | str, ...] | None:
    """A length (:func:`check_length`), or a non-empty list or tuple of them (one per band).

    A Quantity array (``[0.7, 0.8] * u.arcsec``) is one length per band, and
    so is a string written as a list (``"[1, 0.8arcsec]"``, as ``--set`` gives it).
    """
    if hasattr(value, "unit") and not getattr(value, "isscalar", True):
        value = list(value)
    if isinstance(value, str) and value.strip().startswith("["):  # "[1, 0.8arcsec]" from --set
        value = [v.strip().strip("'\"") for v in value.strip().strip("[]").split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} must be a number or a non-empty list, got []")
        return tuple(check_length(name, v, minimum=minimum, strict=strict) for v in value)  # type: ignore[misc]
    return check_length(name, value, minimum=minimum, strict=strict, required=required)


def length_text(number: float, unit: str) -> str:
    """The canonical text of a length with a unit: ``0.8arcsec`` (one word, as a spec writes it)."""
    return f"{number!r}{unit}"


def is_angle(value: Any) -> bool:
    """Whether ``value`` (a checked length, or a tuple of them) holds a length with a unit other than pixels."""
    if isinstance(value, tuple):
        return any(is_angle(v) for v in value)
    return isinstance(value, str)


def to_pixels(value: float | str | tuple[float | str, ...], pixel_scale: Any) -> float | tuple[float, ...]:
    """A checked length (or one per band) in pixels of ``pixel_scale`` (an astropy Quantity per pixel).

    Numbers are pixels already and stay as they are; converted values are
    rounded to 15 significant digits, so that decimal ratios are exact. Raises
    :class:`ConfigError` when the unit cannot be converted to the pixel
    scale's (an angle on data whose pixel scale is a length, say).
    """
    if isinstance(value, tuple):
        return tuple(to_pixels(v, pixel_scale) for v in value)  # type: ignore[misc]
    if not isinstance(value, str):
        return value
    import astropy.units as u

    match = _LENGTH.fullmatch(value)
    quantity = float(match.group(1)) * u.Unit(match.group(2))
    try:
        pixels = float(quantity.to_value(pixel_scale.unit)) / float(pixel_scale.value)
    except u.UnitConversionError:
        raise ConfigError(f"cannot convert {quantity.unit} ({quantity.unit.physical_type}) to pixels of "
                          f"{pixel_scale.value:g} {pixel_scale.unit} ({pixel_scale.unit.physical_type})") from None
    return float(f"{pixels:.15g}")  # 0.6arcsec at 0.2 arcsec: 3 pixels, not 2.9999999999999996
