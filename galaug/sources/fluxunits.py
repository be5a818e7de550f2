"""Flux units of ingested images: the factor that takes pixel values from the files' unit to another.

``galaug ingest --to-unit nJy`` multiplies every image by the factor from
its file's unit (``BUNIT``, or ``--flux-unit``) to the target, found with
``astropy.units``:

- flux densities convert as astropy converts them (``uJy`` to ``nJy``: 1000);
- maggies (``mgy``, ``nanomaggy``/``nmgy``, SDSS and the Legacy Surveys)
  are fluxes relative to 3631 Jy (AB magnitude 0), so 1 nanomaggy is
  3.631 uJy = 3631 nJy (astropy's ``zero_point_flux`` equivalency);
- counts (``ct``, ``adu``, ``electron``, ``DN``, ``ph``, or any of them
  per second) need an AB zero point ``ZP``, the magnitude of one count:
  ``flux_nJy = counts * 10**((31.4 - ZP) / 2.5)`` (31.4 is the AB magnitude
  of 1 nJy), then converted to the target;
- magnitudes (``mag(AB)``) are not linear in flux and are refused, as is
  any pair of units astropy cannot convert.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import astropy.units as u
import numpy as np

from galaug.errors import ParamError

__all__ = ["AB_NJY", "MAGGY", "FluxConversion", "flux_factor", "zero_points"]

#: The AB magnitude of 1 nJy: ``-2.5 log10(1e-9 Jy / 3631 Jy)`` = 31.40.
AB_NJY = 31.4
#: The flux of AB magnitude 0, that of one maggy.
MAGGY = 3631 * u.Jy
_COUNTS = ("ct", "adu", "electron", "DN", "ph")
_EQUIVALENCIES = u.zero_point_flux(MAGGY)


def _parse(text: str, param: str, template: str = "{text!r}", **values: Any) -> u.UnitBase:
    """The astropy unit ``text``; a ParamError naming ``param`` (``template`` first) if astropy does not know it
    or it is not linear."""
    try:
        unit = u.Unit(text, parse_strict="raise")
    except (TypeError, ValueError):
        raise ParamError(param, template + ": {text!r} is not a unit astropy understands (e.g. nJy, nanomaggy, adu, "
                         "electron/s)", text=text, **values) from None
    if not isinstance(unit, u.UnitBase):
        raise ParamError(param, template + ": {text!r} is a magnitude, not a flux linear in the pixel values",
                         text=text, **values)
    return unit


def _counts(unit: u.UnitBase) -> bool:
    """Whether ``unit`` counts something (photons, electrons, ADU), possibly per second."""
    return any(unit.is_equivalent(base) or unit.is_equivalent(base / u.s)
               for base in (u.Unit(name) for name in _COUNTS))


def zero_points(value: float | str | Sequence[float] | None) -> tuple[float, ...] | None:
    """``value`` as one zero point or one per band: ``27``, ``"27,27.1,26.9"``, ``[27, 27.1]``.

    Raises :class:`ParamError` (``zero_point``) for a value that is not finite numbers.
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    try:
        points = tuple(float(v) for v in items if not isinstance(v, bool))
    except (TypeError, ValueError):
        points = ()
    if len(points) != len(items) or not points or not all(math.isfinite(p) for p in points):
        raise ParamError("zero_point", "{zero_point} must be an AB magnitude, or one per band (27,27.1), "
                         "got {text!r}", text=value)
    return points


def flux_factor(from_unit: str, to_unit: str, *, zero_point: float | None = None) -> float:
    """The factor that takes pixel values in ``from_unit`` to ``to_unit``.

    ``zero_point`` (an AB magnitude) converts counts: ``flux_nJy = counts *
    10**((31.4 - zero_point) / 2.5)``. Raises :class:`ParamError` naming both
    units when they do not convert (counts without a zero point among them).
    """
    both = "cannot convert {src!r} to {dst!r}"
    source = _parse(from_unit, "flux_unit", both, src=from_unit, dst=to_unit)
    target = _parse(to_unit, "to_unit", both, src=from_unit, dst=to_unit)
    names = {"src": source.to_string(), "dst": target.to_string()}
    scale, via = 1.0, source
    if _counts(source) and not (_counts(target) and zero_point is None):  # electron/s to electron/h needs none
        if zero_point is None:
            raise ParamError("zero_point", "cannot convert {src} to {dst}: counts need an AB zero point "
                             "({zero_point} ZP: flux_nJy = counts * 10**((31.4 - ZP) / 2.5))", **names)
        scale, via = 10 ** ((AB_NJY - zero_point) / 2.5), u.nJy  # nJy per count
    try:
        factor = scale * float(via.to(target, equivalencies=_EQUIVALENCIES))
    except u.UnitConversionError:
        hint = " (a zero point converts counts only)" if zero_point is not None and scale == 1.0 else ""
        raise ParamError("to_unit", "cannot convert {src} to {dst}: astropy finds no conversion between "
                         "them{hint}", hint=hint, **names) from None
    return float(f"{factor:.15g}")  # decimal factors exact: 3631, not 3630.9999999999995


class FluxConversion:
    """Images of each file multiplied by the factor from its flux unit to ``to_unit``, band by band.

    Parameters
    ----------
    to_unit : str
        The unit of the dataset.
    zero_point : tuple of float, optional
        One AB zero point, or one per band, for files in counts.
    user_unit : str, optional
        The unit of every file (``--flux-unit``), overriding what they declare.
    """

    def __init__(self, to_unit: str, *, zero_point: tuple[float, ...] | None = None,
                 user_unit: str | None = None) -> None:
        self.to_unit = _parse(to_unit, "to_unit", "{to_unit}").to_string()
        self.zero_point, self.user_unit = zero_point, user_unit
        self.factors: dict[str, dict[str, Any]] = {}  # source unit -> {"factor": per band, "images", "first"}
        self.counted: set[str] = set()  # units seen to be counts (with zero_point)
        if user_unit is not None:  # a bad pair fails before any file is read
            self._check_counts(user_unit, "every file")
            for zp in zero_point or (None,):
                flux_factor(user_unit, self.to_unit, zero_point=zp)

    def _check_counts(self, unit: str, label: str) -> None:
        """With a zero point, refuse a unit that is not counts: the zero point would be ignored."""
        if self.zero_point is None or unit in self.counted:
            return
        if not _counts(_parse(unit, "flux_unit", "cannot convert {src!r} to {to}", src=unit, to=self.to_unit)):
            raise ParamError("zero_point", "{zero_point} converts counts, but {label} is in {unit} (give the "
                             "files' unit with {flux_unit} if their BUNIT is wrong)", label=label, unit=unit)
        self.counted.add(unit)

    def __call__(self, label: str, image: np.ndarray, declared: str | None) -> np.ndarray:
        """``image`` (C, H, W) in :attr:`to_unit`; ``declared`` is its file's unit (None: none)."""
        unit = self.user_unit or declared
        if unit is None:
            raise ParamError("flux_unit", "{to_unit} {to} needs the unit of the images: {label} declares no "
                             "flux unit (BUNIT); give it with {flux_unit}", to=self.to_unit, label=label)
        self._check_counts(unit, label)
        n_bands = len(image)
        key = f"{unit} x{n_bands}"
        if key not in self.factors:
            points = self.zero_point or (None,)
            if len(points) not in (1, n_bands):
                raise ParamError("zero_point", "{zero_point} has {n} values but {label} has {c} bands",
                                 n=len(points), label=label, c=n_bands)
            try:
                factors = [flux_factor(unit, self.to_unit, zero_point=zp) for zp in points]
            except ParamError as exc:
                exc.values.setdefault("label", label)
                raise ParamError(exc.param, exc.template + " ({label})", **exc.values) from None
            self.factors[key] = {"from": unit, "factor": factors * (n_bands // len(factors)), "images": 0,
                                 "first": label}
        entry = self.factors[key]
        entry["images"] += 1
        factor = np.asarray(entry["factor"], dtype=np.float64)[:, None, None]
        return (image * factor).astype(np.float32)

    def record(self) -> dict[str, Any]:
        """For the provenance: the target, the zero points, and per source unit the factor of each band."""
        return {"to": self.to_unit, "zero_point": None if self.zero_point is None else list(self.zero_point),
                "from": [dict(v) for v in self.factors.values()]}

    def notes(self) -> list[str]:
        """One line per source unit for ingest's report."""
        return [f"{v['images']} images read in {v['from']}, converted to {self.to_unit} (x "
                f"{', '.join(f'{f:.6g}' for f in dict.fromkeys(v['factor']))})" for v in self.factors.values()]
