"""Helpers shared by the degradations: option checks and per-band values."""

from __future__ import annotations

import math
from typing import Any

from galaug.errors import ConfigError

__all__ = ["check_number", "check_per_band", "per_band", "in_pixels", "check_images"]


#: the smallest and largest non-zero magnitudes a degradation parameter may have
_MAGNITUDE = (1e-15, 1e15)


def check_number(name: str, value: Any, *, minimum: float = 0.0, strict: bool = True,
                 required: bool = True) -> float | None:
    """``value`` as a finite float above ``minimum`` (or at least it, unless ``strict``).

    Raises ``ValueError`` whose message starts with ``name`` (the pipeline
    parser points at that key's value).
    """
    if value is None:
        if required:
            raise ValueError(f"{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be {relation} {minimum:g}, got {value:g}")
    if value != 0 and not _MAGNITUDE[0] <= abs(value) <= _MAGNITUDE[1]:
        # images are float32: products of such values (sky x gain, x / gain) would overflow or vanish
        raise ValueError(f"{name} must be 0 or between {_MAGNITUDE[0]:g} and {_MAGNITUDE[1]:g} in size, got {value:g}")
    return value


def check_per_band(name: str, value: Any, *, minimum: float = 0.0, strict: bool = True,
                   required: bool = True) -> float | tuple[float, ...] | None:
    """A number, or a non-empty list or tuple of numbers (one per band), each checked."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} must be a number or a non-empty list, got []")
        return tuple(check_number(name, v, minimum=minimum, strict=strict) for v in value)  # type: ignore[misc]
    return check_number(name, value, minimum=minimum, strict=strict, required=required)


def per_band(name: str, value: float | tuple[float, ...], n_bands: int) -> list[float]:
    """One value per band; a list whose length is not ``n_bands`` is a :class:`ConfigError`.

    So is a length still given as an angle (``"0.8arcsec"``, see :mod:`galaug.degrade.units`).
    """
    if isinstance(value, tuple):
        if len(value) != n_bands:
            raise ConfigError(f"{name} has {len(value)} values but the images have {n_bands} bands")
        return [in_pixels(name, v) for v in value]
    return [in_pixels(name, value)] * n_bands


def in_pixels(name: str, value: float | str) -> float:
    """``value`` as a float; a :class:`ConfigError` for a length still given as an angle (``"0.8arcsec"``)."""
    if isinstance(value, str):
        raise ConfigError(f"{name}={value} is not in pixels: the pipeline needs the images' pixel scale "
                          "(Pipeline.in_pixels(pixel_scale); galaug degrade uses the dataset's)")
    return float(value)


def check_images(images: Any) -> None:
    """Refuse anything but a floating-point (B, C, H, W) tensor."""
    if getattr(images, "ndim", None) != 4:
        raise ValueError(f"images must be a (B, C, H, W) tensor, got shape {tuple(getattr(images, 'shape', ()))}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor, got {images.dtype}")
