"""How much of a set to take: the values of ``real``, ``gen``, ``val`` and ``alpha``.

One grammar for every share (``galaug mix --real/--gen``, ``galaug split
--val``, the arms of ``galaug experiment``)::

    share      := count | fraction | percentage | multiple
    count      := digits [" image(s)"]      "300", "1 image"  that many samples (but not a bare "1")
                | "n=" digits               "n=1"
    fraction   := number with "." or "e"    "0.1", ".5"  of the set, between 0 and 1 ("1.0": all of it)
    percentage := number "%"                "10%"        of the set, between 0% and 100%
    multiple   := number "x"                "5x"         times another set, where a parameter allows it
    number     := [+-] ASCII digits ["." digits] [e [+-] digits]

Spaces around the value and before ``%``, ``x`` or ``image`` are ignored,
and ``x`` may be ``X``. A bare ``1`` is refused: read as a count it takes
one image where "all of it" was likely meant, so the whole set is ``1.0``
or ``100%`` and one image ``1 image`` or ``n=1``. ``alpha`` is a
probability: a number between 0 and 1.

Every error is a :class:`galaug.errors.ParamError` that names the
parameter (``gen``); the CLI writes it with the option's name (``--gen``).
"""

from __future__ import annotations

import dataclasses
import math
import re

from galaug.errors import ParamError

__all__ = ["Share", "parse_share", "resolve_share", "parse_alpha", "SHARE_FORMS"]

_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_SHARE = re.compile(rf"(?P<number>{_NUMBER})(?:[ \t]*(?P<suffix>[%xX]))?", re.ASCII)
_COUNT = re.compile(r"[+-]?[0-9]+", re.ASCII)
#: A count said to be one: "1 image", "300 images", "n=1".
_COUNTED = re.compile(r"(?P<k>[+-]?[0-9]+)[ \t]*images?|n[ \t]*=[ \t]*(?P<n>[+-]?[0-9]+)", re.ASCII)
_MAX_MULTIPLE = 1e12
_MAX_COUNT = 2**63 - 1

#: How the forms of a share are described in an error, by whether a multiple is allowed.
SHARE_FORMS = {False: "a fraction (0.2), a percentage (20%) or a count (300)",
               True: "a multiple (5x), a fraction (0.2), a percentage (20%) or a count (300)"}


def _shown(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error(param: str, problem: str, **values: object) -> ParamError:
    """A :class:`ParamError` whose message starts with the parameter: ``{param} problem``."""
    return ParamError(param, "{" + param + "} " + problem, **values)


@dataclasses.dataclass(frozen=True)
class Share:
    """A parsed share.

    Attributes
    ----------
    kind : str
        ``"count"``, ``"fraction"`` (a percentage too) or ``"multiple"``.
    value : int or float
        The count, the fraction (``0.1`` for ``10%``) or the multiple.
    text : str
        The value as written, without the surrounding spaces.
    """

    kind: str
    value: int | float
    text: str

    def of(self, n: int) -> int:
        """The number of samples this share takes of (or, for a multiple, relative to) a set of ``n``."""
        if self.kind == "count":
            return int(self.value)
        return round(self.value * n)


def parse_share(value: str | int | float, *, param: str, multiple: bool = False,
                expected: str | None = None, whole: str | None = None) -> Share:
    """Parse a share (see the module docstring).

    Parameters
    ----------
    value : str or number
        ``"0.1"``, ``"10%"``, ``"300"``, ``"5x"``; a number is read as its ``str``.
    param : str
        The parameter the value belongs to, named in errors (``"real"``).
    multiple : bool
        Whether the multiple form (``5x``) is allowed.
    expected : str, optional
        What the forms mean for this parameter, for the error of a value that
        does not parse (default: :data:`SHARE_FORMS`); other parameters are
        written as ``{name}`` fields, as in a :class:`ParamError` template.
    whole : str, optional
        How to write the whole set for this parameter, for the error of a
        bare ``1`` (default: ``1.0 or 100% for the whole set``), written as
        ``expected`` is.

    Raises
    ------
    galaug.errors.ParamError
        A bare ``1`` (write ``1.0``/``100%`` or ``1 image``/``n=1``), a
        value that does not parse, a fraction outside [0, 1], a
        percentage outside [0%, 100%], a negative or too large count, a
        multiple that is not a positive number below 1e12.
    """
    text = str(value).strip()
    counted = _COUNTED.fullmatch(text)
    if counted:
        return _count(counted["k"] or counted["n"], text, param)
    match = _SHARE.fullmatch(text)
    suffix = match["suffix"] if match else None
    if match is None or (suffix in ("x", "X") and not multiple):
        if multiple and text[-1:] in ("x", "X"):
            raise _error(param, "{text!r}: a multiple looks like 5x or 0.5x", text=_shown(text))
        raise _error(param, f"must be {expected or SHARE_FORMS[multiple]}, got {{text!r}}", text=_shown(text))
    number = match["number"]
    if suffix in ("x", "X"):
        factor = float(number)
        if not 0 < factor < _MAX_MULTIPLE:
            raise _error(param, "{text}: the multiple must be a positive number (below 1e12)", text=_shown(text))
        return Share("multiple", factor, text)
    if suffix == "%":
        percent = float(number)
        if not 0 <= percent <= 100:
            raise _error(param, "percentage must be between 0% and 100%, got {text}", text=text)
        return Share("fraction", percent / 100, text)
    if _COUNT.fullmatch(number):
        if number.lstrip("+").lstrip("0") == "1":  # one image, where "all of it" was likely meant
            raise _error(param, f"{{text}} is ambiguous: write {whole or '1.0 or 100% for the whole set'}, "
                                "or '1 image' (n=1) for one image", text=text)
        return _count(number, text, param)
    fraction = float(number)
    if not 0 <= fraction <= 1:
        raise _error(param, "fraction must be between 0 and 1, got {text}", text=_shown(text))
    return Share("fraction", fraction, text)


def _count(number: str, text: str, param: str) -> Share:
    """The count ``number`` (digits with an optional sign) of the share written ``text``."""
    digits = number.lstrip("+-").lstrip("0")
    if number.startswith("-") and digits:
        raise _error(param, "must not be negative, got {text}", text=text)
    if len(digits) > 19 or int(number) > _MAX_COUNT:  # int() refuses thousands of digits
        raise _error(param, "count {text} is too large", text=_shown(text))
    return Share("count", abs(int(number)), text)


def resolve_share(value: str | int | float, n: int, *, param: str) -> int:
    """The number of samples that a fraction, percentage or count ``value`` takes of a set of ``n``.

    Raises
    ------
    galaug.errors.ParamError
        A value that does not parse (a multiple is not allowed here), or
        that asks for more than ``n`` samples.
    """
    k = parse_share(value, param=param).of(n)
    if not 0 <= k <= n:
        raise _error(param, "asks for {k} of {n} samples", k=k, n=n)
    return k


def parse_alpha(value: str | int | float, *, param: str = "alpha") -> float:
    """The probability ``value`` (a number between 0 and 1) as a float.

    Raises
    ------
    galaug.errors.ParamError
        A value that is not a number between 0 and 1.
    """
    if isinstance(value, bool):
        number = math.nan
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        number = float(text) if re.fullmatch(_NUMBER, text, re.ASCII) else math.nan
    if not 0 <= number <= 1:
        raise _error(param, "must be a probability between 0 and 1, got {value!r}",
                     value=value if isinstance(value, (int, float)) else _shown(str(value)))
    return number
