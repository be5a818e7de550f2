"""Degradation pipelines: ``"psf:gaussian(sigma=2)|resample(scale=2)|noise:gaussian(std=4)"``.

Grammar (whitespace between tokens is ignored)::

    pipeline := step ("|" step)*
    step     := name ["(" [arg ("," arg)* [","]] ")"]
    arg      := key "=" value
    value    := scalar | "[" [scalar ("," scalar)* [","]] "]"
    scalar   := number | true | false | "quoted" | 'quoted' | bare-word

A name ``a:b`` is the registered degradation ``a-b`` (``psf:gaussian`` is
``psf-gaussian``); any other name is looked up as written, so third-party
degradations work too. A bare word is any run of characters other than
whitespace, quotes and ``()[],=|`` (``file=psf/hsc-i.fits``); quote values
that contain those characters. Each value is checked against the
component's ``Config`` field, so ``sigma=[2, 2.2, 2.4]`` is a per-band tuple.

Every error is a :class:`galaug.errors.ConfigError` on one line that
gives the column (1-based) of the offending token.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from galaug.config import config_to_dict, convert
from galaug.errors import ConfigError, GalaugError
from galaug.registry import spec_name

if TYPE_CHECKING:
    import numpy as np
    import torch

    from galaug.kinds import Degradation
    from galaug.registry import Registry

__all__ = ["Pipeline", "Step", "as_pipeline", "parse_pipeline", "spec_name"]

_PUNCT = "()[],=|"
_QUOTES = "\"'"
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE = re.compile(r"[^\s\"'()\[\],=|]+")
_INT64 = 2**63


def _printable(text: str) -> str:
    """``text`` on one line, each control or space character shown as a space (columns unchanged)."""
    return "".join(" " if ch.isspace() or not ch.isprintable() else ch for ch in text)


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str  # "word", "string", one of _PUNCT, or "end"
    text: str
    column: int  # 1-based


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the pipeline"
    return repr(_printable(token.text))


class _Parser:
    """Tokenizer and recursive-descent parser of one spec; errors carry a column."""

    def __init__(self, spec: str, registry: Registry) -> None:
        self.spec = spec
        self.registry = registry
        self.tokens = self._tokenize()
        self.pos = 0

    # -- errors and tokens -------------------------------------------------------
    def error(self, message: str, column: int, hint: str = "") -> ConfigError:
        text = f'pipeline "{_printable(self.spec)}": {message} at column {column}'
        return ConfigError(text + (f" ({hint})" if hint else ""))

    def _tokenize(self) -> list[_Token]:
        tokens, spec, i = [], self.spec, 0
        while i < len(spec):
            ch = spec[i]
            if ch.isspace():
                i += 1
            elif ch in _PUNCT:
                tokens.append(_Token(ch, ch, i + 1))
                i += 1
            elif ch in _QUOTES:
                chars, j = [], i + 1
                while j < len(spec) and spec[j] != ch:
                    if spec[j] == "\\" and j + 1 < len(spec):
                        j += 1
                    chars.append(spec[j])
                    j += 1
                if j >= len(spec):
                    raise self.error("unterminated string", i + 1, f"no closing {ch}")
                tokens.append(_Token("string", "".join(chars), i + 1))
                i = j + 1
            else:
                match = _BARE.match(spec, i)
                assert match is not None  # ch is neither space, punctuation nor a quote
                tokens.append(_Token("word", match.group(), i + 1))
                i = match.end()
        tokens.append(_Token("end", "", len(spec) + 1))
        return tokens

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def next(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return token

    def expect(self, kinds: str, what: str) -> _Token:
        token = self.next()
        if token.kind not in kinds:
            raise self.error(f"expected {what}", token.column, f"found {_describe(token)}")
        return token

    # -- grammar -----------------------------------------------------------------
    def pipeline(self) -> Pipeline:
        if self.peek().kind == "end":
            raise self.error("empty pipeline", 1, "write steps like psf:gaussian(sigma=2)|noise:gaussian(std=4)")
        steps = [self.step()]
        while True:
            token = self.next()
            if token.kind == "end":
                return Pipeline(steps)
            if token.kind != "|":
                raise self.error("expected '|' or the end of the pipeline", token.column, f"found {_describe(token)}")
            steps.append(self.step())

    def step(self) -> Step:
        token = self.peek()
        if token.kind in ("|", "end"):
            raise self.error("empty step", token.column)
        name_token = self.expect(("word",), "a degradation name")
        cls, name, version = self.lookup(name_token)
        args: dict[str, tuple[Any, Any, _Token, int]] = {}
        if self.peek().kind == "(":
            self.next()
            while self.peek().kind != ")":
                key = self.expect(("word",), "key=value or ')'")
                if not _KEY.fullmatch(key.text):
                    raise self.error(f"{_describe(key)} is not a key", key.column, "expected key=value")
                self.check_key(key, cls, name)
                if key.text in args:
                    raise self.error(f"duplicate key {key.text!r}", key.column)
                self.expect(("=",), f"'=' after {key.text!r}")
                value_column = self.peek().column
                parsed, raw = self.value()
                args[key.text] = (parsed, raw, key, value_column)
                if self.peek().kind != ")":
                    self.expect((",",), "',' or ')'")
            self.next()
        return Step(name, self.build(cls, name, name_token, args), version)

    def value(self) -> tuple[Any, Any]:
        """The next value, as parsed (numbers, booleans) and as written (for str and Path fields)."""
        token = self.next()
        if token.kind == "[":
            parsed, raw = [], []
            while self.peek().kind != "]":
                item = self.next()
                if item.kind == "[":
                    raise self.error("nested lists are not supported", item.column)
                if item.kind not in ("word", "string"):
                    raise self.error("expected a value or ']'", item.column, f"found {_describe(item)}")
                parsed.append(self.scalar(item))
                raw.append(item.text)
                if self.peek().kind != "]":
                    self.expect((",",), "',' or ']'")
            self.next()
            return parsed, raw
        if token.kind not in ("word", "string"):
            raise self.error("expected a value", token.column, f"found {_describe(token)}")
        return self.scalar(token), token.text

    def scalar(self, token: _Token) -> Any:
        text = token.text
        if token.kind == "string":
            return text
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        if _INTEGER.fullmatch(text):
            digits = len(text.lstrip("+-").lstrip("0"))
            number = int(text) if digits <= 19 else None  # int() refuses thousands of digits
            if number is None or not -_INT64 <= number < _INT64:
                raise self.error(f"integer {_printable(text[:24])}{'...' if len(text) > 24 else ''} is out of range",
                                 token.column)
            return number
        if _NUMBER.fullmatch(text):
            return float(text)
        return text

    # -- components --------------------------------------------------------------
    def lookup(self, token: _Token) -> tuple[type[Degradation], str, str]:
        name = token.text.replace(":", "-")
        try:
            entry = self.registry.entry("degradation", name)
        except GalaugError:
            available = [spec_name(n) for n in self.registry.names("degradation")]
            query = token.text.lower()
            query = query if ":" in query else spec_name(query)
            close = difflib.get_close_matches(query, available, n=1)
            listing = f"available: {', '.join(available) or 'none installed'}"
            hint = f"did you mean {close[0]!r}? {listing}" if close else listing
            raise self.error(f"unknown degradation {_printable(token.text)!r}", token.column, hint) from None
        try:
            cls = self.registry.load(entry)
        except GalaugError as exc:
            raise self.error(_printable(str(exc)), token.column) from None
        return cls, entry.name, entry.version

    def check_key(self, key: _Token, cls: type, name: str) -> None:
        valid = [f.name for f in dataclasses.fields(cls.Config)]
        if key.text in valid:
            return
        close = difflib.get_close_matches(key.text, valid, n=1)
        if close:
            hint = f"did you mean {close[0]!r}?"
        else:
            hint = f"keys: {', '.join(valid)}" if valid else f"{spec_name(name)} takes no options"
        raise self.error(f"unknown key {key.text!r} for {spec_name(name)}", key.column, hint)

    def build(self, cls: type[Degradation], name: str, name_token: _Token,
              args: dict[str, tuple[Any, Any, _Token, int]]) -> Degradation:
        types_ = typing.get_type_hints(cls.Config)
        kwargs = {}
        for key, (parsed, raw, _, column) in args.items():
            try:
                kwargs[key] = convert(parsed, types_[key], key)
            except ConfigError as exc:
                try:
                    kwargs[key] = convert(raw, types_[key], key)  # "2" for a str or Path field
                except ConfigError:
                    raise self.error(f"{spec_name(name)}: {exc}", column) from None

        def fail(exc: Exception) -> ConfigError:
            message = _printable(str(exc))
            first = message.split(" ", 1)[0]
            column = args[first][3] if first in args else name_token.column
            return self.error(f"{spec_name(name)}: {message}", column)

        try:
            config = cls.Config(**kwargs)
        except (TypeError, ValueError) as exc:
            raise fail(exc) from None
        try:
            return cls(config)
        except (ValueError, TypeError, OSError, GalaugError) as exc:
            raise fail(exc) from None


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a pipeline: the registered name, the component, its plugin's version."""

    name: str
    component: Degradation
    version: str = ""

    @property
    def spec(self) -> str:
        """The step in canonical spec form: every option that is set, in field order.

        Each value is written as the parser reads it back (an int in a float
        field as a float), so a step built from a component and the step
        parsed from its spec have the same spec.
        """
        values = config_to_dict(self.component.config)
        try:
            types_ = typing.get_type_hints(type(self.component.config))
        except (NameError, TypeError):  # annotations that do not resolve: the values as they are
            types_ = {}
        args = [f"{k}={_format_value(_as_parsed(v, types_.get(k), k))}" for k, v in values.items() if v is not None]
        return spec_name(self.name) + (f"({', '.join(args)})" if args else "")


def _as_parsed(value: Any, tp: Any, key: str) -> Any:
    """``value`` converted to the field type ``tp`` as the parser converts it; as it is if that fails."""
    if tp is None:
        return value
    try:
        return convert(value, tp, key)
    except ConfigError:
        return value


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    text = str(value)
    if _BARE.fullmatch(text) and not _NUMBER.fullmatch(text) and text.lower() not in ("true", "false"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _as_step(item: Step | Degradation) -> Step:
    """``item`` as a Step: a component gets its registered name and its plugin's version."""
    from galaug.kinds import Degradation
    from galaug.registry import component_version

    if isinstance(item, Step):
        return item
    if isinstance(item, Degradation):
        return Step(item.name, item, component_version(type(item)) or "")
    if isinstance(item, type) and issubclass(item, Degradation):
        raise TypeError(f"pipeline steps must be Degradation instances, got the class {item.__name__} "
                        f"(write {item.__name__}() or {item.__name__}(config))")
    raise TypeError(f"pipeline steps must be Step or Degradation instances, got {type(item).__name__}")


class Pipeline:
    """Degradations applied in order, with seeds derived per sample and per step.

    Parse one from a spec with :func:`parse_pipeline`, or build one from
    components::

        Pipeline([GaussianPSF(GaussianPSFConfig(sigma=2.0)), GaussianNoise(GaussianNoiseConfig(std=4.0))])

    Both give the same pipeline: the same :attr:`spec` and, for the same
    seeds, the same output. Step ``k`` (0-based) of sample ``i`` gets the
    seed ``derive_seeds(sample_seed_i, k)`` (:mod:`galaug.degrade.seeds`),
    so the output of a sample depends only on its pixels and its seed.

    Parameters
    ----------
    steps : sequence of Step or Degradation
        At least one. A :class:`galaug.kinds.Degradation` instance becomes a
        :class:`Step` with the component's registered ``name`` and its
        ``version`` (the version of the distribution that ships it when the
        class sets none), as the registry records it.
    """

    def __init__(self, steps: Sequence[Step | Degradation]) -> None:
        if isinstance(steps, (str, bytes)):
            raise TypeError("Pipeline takes a list of steps; parse a spec with parse_pipeline()")
        steps = tuple(steps)
        if not steps:
            raise ValueError("a pipeline needs at least one step")
        self.steps: tuple[Step, ...] = tuple(_as_step(step) for step in steps)
        #: The lengths :meth:`in_pixels` converted to make this pipeline (empty otherwise).
        self.conversions: tuple[dict[str, Any], ...] = ()

    def __repr__(self) -> str:
        return f"Pipeline({self.spec!r})"

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def spec(self) -> str:
        """Canonical spec: parses back to the same pipeline (recorded in provenance)."""
        return "|".join(step.spec for step in self.steps)

    @property
    def stochastic(self) -> bool:
        """True if any step draws random numbers."""
        return any(step.component.stochastic for step in self.steps)

    def scaled(self, factor: float) -> Pipeline:
        """The pipeline with the noise of every step ``factor`` times stronger in standard deviation.

        Each step's component is replaced by ``component.scaled(factor)``
        (:meth:`galaug.kinds.Degradation.scaled`): the built-in noises scale
        their parameters, PSFs and resampling stay as they are, and a
        third-party noise takes part by implementing ``scaled``.

        Raises
        ------
        ValueError
            Naming the step, for a stochastic step that does not implement
            ``scaled`` (or a ``factor`` that is not a finite number > 0).
        """
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
        steps = []
        for k, step in enumerate(self.steps):
            try:
                component = step.component.scaled(factor)
            except ValueError as exc:
                raise ValueError(f'pipeline "{_printable(self.spec)}": step {k + 1} ({spec_name(step.name)}): '
                                 f"{exc}") from None
            steps.append(step if component is step.component else dataclasses.replace(step, component=component))
        return Pipeline(steps)

    def angles(self) -> list[tuple[int, str, Any]]:
        """``(step, key, value)`` of every length given with a unit (``fwhm=0.8arcsec``), step 0-based.

        The lengths of a step are the config fields its component lists in
        ``lengths`` (:attr:`galaug.kinds.Degradation.lengths`).
        """
        from galaug.degrade.units import is_angle

        return [(k, key, getattr(step.component.config, key)) for k, step in enumerate(self.steps)
                for key in getattr(step.component, "lengths", ()) if is_angle(getattr(step.component.config, key))]

    @property
    def needs_pixel_scale(self) -> bool:
        """True if a length is given with a unit: :meth:`in_pixels` must convert it before the pipeline applies."""
        return bool(self.angles())

    def in_pixels(self, pixel_scale: Any, *, of: str = "the images") -> Pipeline:
        """The pipeline with every length given as an angle (``fwhm=0.8arcsec``) converted to pixels.

        A step's lengths are converted with the pixel scale of the images it
        receives: ``pixel_scale`` times the pixel-scale factors of the steps
        before it (after ``resample(keep_size=false)``, pixels are larger).
        Lengths in pixels stay as they are; a pipeline without angles is
        returned as it is.

        Parameters
        ----------
        pixel_scale : astropy.units.Quantity, str or None
            The input images' scale per pixel (``0.2 * u.arcsec``, ``"0.2 arcsec"``);
            None when unknown.
        of : str
            What the pixel scale is of, for the error when it is unknown.

        Returns
        -------
        Pipeline
            Its :attr:`conversions` list every converted length: ``{"step": 1,
            "degradation": "psf-gaussian", "key": "fwhm", "given": "0.8arcsec",
            "pixels": 4.0, "pixel_scale": {"value": 0.2, "unit": "arcsec"}}`` (``step``
            1-based, as in error messages; per-band values as lists).

        Raises
        ------
        ConfigError
            One line naming the step and the key: an angle and no pixel scale,
            a unit that does not convert to the pixel scale's (an angle on data
            whose scale is a length), or a converted value out of range.
        """
        from galaug.data import _format as fmt
        from galaug.degrade.units import is_angle, to_pixels

        angles = self.angles()
        if not angles:
            return self
        if pixel_scale is None:
            k, key, value = angles[0]
            raise ConfigError(f"{self._where(k)}{key}={_format_value(value)} needs the pixel scale of {of}, "
                              "which is unknown: give lengths in pixels, or the pixel scale when ingesting "
                              "(galaug ingest --pixel-scale)")
        try:
            scale = fmt.pixel_scale_quantity(fmt.pixel_scale_attr(pixel_scale))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        steps, conversions = [], []
        for k, step in enumerate(self.steps):
            component = step.component
            changes = {}
            for key in getattr(component, "lengths", ()):
                value = getattr(component.config, key)
                if not is_angle(value):
                    continue
                try:
                    changes[key] = to_pixels(value, scale)
                except ConfigError as exc:
                    raise ConfigError(f"{self._where(k)}{key}={_format_value(value)}: {exc}") from None
                conversions.append({"step": k + 1, "degradation": step.name, "key": key,
                                    "given": list(value) if isinstance(value, tuple) else value,
                                    "pixels": list(changes[key]) if isinstance(changes[key], tuple) else changes[key],
                                    "pixel_scale": fmt.pixel_scale_attr(scale)})
            if changes:
                try:
                    component = type(component)(dataclasses.replace(component.config, **changes))
                except (TypeError, ValueError, GalaugError) as exc:
                    given = ", ".join(f"{key}={_format_value(getattr(step.component.config, key))}" for key in changes)
                    raise ConfigError(f"{self._where(k)}{given} at {scale.value:g} {scale.unit} per pixel: "
                                      f"{_printable(str(exc))}") from None
                step = dataclasses.replace(step, component=component)
            steps.append(step)
            scale = scale * float(component.pixel_scale_factor())
        out = Pipeline(steps)
        out.conversions = tuple(conversions)
        return out

    def _where(self, k: int) -> str:
        return f'pipeline "{_printable(self.spec)}": step {k + 1} ({spec_name(self.steps[k].name)}): '

    def pixel_scale_factor(self) -> float:
        """Output pixel scale over input pixel scale: the product over the steps."""
        factor = 1.0
        for step in self.steps:
            factor *= float(step.component.pixel_scale_factor())
        return factor

    def config_dict(self) -> list[dict[str, Any]]:
        """Each step's registered name, plugin version and resolved config (JSON-serialisable)."""
        return [{"degradation": s.name, "version": s.version, "config": config_to_dict(s.component.config)}
                for s in self.steps]

    def sample_seeds(self, seed: int | Any, n: int) -> np.ndarray:
        """Per-sample seeds (n,) int64: ``derive_seeds(seed, i)`` for an int, the values for an array."""
        import numpy as np

        from galaug.degrade.seeds import derive_seeds

        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return derive_seeds(int(seed), np.arange(n))
        arr = seed.detach().cpu().numpy() if hasattr(seed, "detach") else np.asarray(seed)
        if arr.shape != (n,) or arr.dtype.kind not in "iu":
            raise ValueError(f"seed must be an int or {n} integer seeds, got {arr.dtype} of shape {arr.shape}")
        return arr.astype(np.int64)

    def apply(self, images: torch.Tensor, seed: int | torch.Tensor) -> torch.Tensor:
        """Degrade ``images`` (B, C, H, W) on their device.

        Parameters
        ----------
        images : torch.Tensor
            Floating point, on any device; not modified.
        seed : int or torch.Tensor
            An int (sample ``i`` gets ``derive_seeds(seed, i)``) or (B,) int64
            per-sample seeds (``galaug degrade`` passes ``derive_seeds(seed, row)``).

        Returns
        -------
        torch.Tensor
            (B, C, H', W') on the same device.

        Raises
        ------
        ConfigError
            When a step does not fit the images (a per-band list whose length
            is not the number of bands, an image too small to resample).
        """
        import torch

        from galaug.degrade.seeds import derive_seeds

        seeds = self.sample_seeds(seed, images.shape[0])
        out = images
        for k, step in enumerate(self.steps):
            step_seeds = torch.from_numpy(derive_seeds(seeds, k)).to(images.device)
            try:
                out = step.component.apply(out, step_seeds)
            except ConfigError as exc:
                raise ConfigError(f'pipeline "{_printable(self.spec)}": step {k + 1} '
                                  f"({spec_name(step.name)}): {exc}") from None
        return out

    def output_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """The (C, H, W) of the output for inputs of ``shape``, found by degrading one zero image.

        Raises :class:`ConfigError` when a step does not fit images of this shape.
        """
        import torch

        out = self.apply(torch.zeros((1, *shape), dtype=torch.float32), 0)
        return tuple(out.shape[1:])  # type: ignore[return-value]

    # -- a dataset's per-pixel maps and WCS (galaug degrade) -------------------------------------------------
    def apply_with_maps(self, images: torch.Tensor, seed: int | torch.Tensor, *, variance: torch.Tensor | None = None,
                        mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """:meth:`apply`, with the per-pixel ``variance`` and ``mask`` of the images carried through each step.

        Each step's :meth:`~galaug.kinds.Degradation.propagate_variance` sees
        the images it degrades; a map becomes None from the first step that
        cannot carry it (:meth:`carried` says which, and why). ``variance`` is
        ``inf`` where unknown; ``mask`` is int32 bit flags.
        """
        import torch

        from galaug.degrade.seeds import derive_seeds

        seeds = self.sample_seeds(seed, images.shape[0])
        out = images
        for k, step in enumerate(self.steps):
            step_seeds = torch.from_numpy(derive_seeds(seeds, k)).to(images.device)
            try:
                if variance is not None:
                    variance = step.component.propagate_variance(variance, out)
                degraded = step.component.apply(out, step_seeds)
                if mask is not None:
                    mask = step.component.propagate_mask(mask)
            except ConfigError as exc:
                raise ConfigError(f'pipeline "{_printable(self.spec)}": step {k + 1} '
                                  f"({spec_name(step.name)}): {exc}") from None
            variance = variance if variance is None or variance.shape == degraded.shape else None
            mask = mask if mask is None or mask.shape == degraded.shape else None
            out = degraded
        return out, variance, mask

    def carried(self, shape: Sequence[int]) -> dict[str, Any]:
        """What passes through this pipeline for images of ``shape`` (C, H, W), found on one zero image.

        Returns ``{"grid", "variance", "mask", "notes"}``: ``grid`` is where
        the output's pixels lie on the input's (the steps'
        :meth:`~galaug.kinds.Degradation.pixel_grid` composed; None when a
        step does not say, so a WCS cannot follow), ``variance`` and
        ``mask`` whether every step carries them, and ``notes`` one line for
        each that does not pass, naming the step.
        """
        import torch

        x = torch.zeros((1, *shape), dtype=torch.float32)
        variance: torch.Tensor | None = torch.zeros_like(x)
        mask: torch.Tensor | None = torch.zeros(x.shape, dtype=torch.int32)
        grid: tuple[tuple[float, float], tuple[float, float]] | None = ((1.0, 0.0), (1.0, 0.0))
        notes = []
        seeds = torch.zeros(1, dtype=torch.int64)
        for k, step in enumerate(self.steps):
            where = f"step {k + 1} ({spec_name(step.name)})"
            component = step.component
            try:
                v = component.propagate_variance(variance, x) if variance is not None else None
                y = component.apply(x, seeds)
                m = component.propagate_mask(mask) if mask is not None else None
                g = component.pixel_grid(*x.shape[-2:]) if grid is not None else None
            except ConfigError as exc:
                raise ConfigError(f'pipeline "{_printable(self.spec)}": {where}: {exc}') from None
            if variance is not None and (v is None or v.shape != y.shape):
                notes.append(f"ivar dropped: {where} does not say how it changes the variance")
            variance = v if v is not None and v.shape == y.shape else None
            if mask is not None and (m is None or m.shape != y.shape):
                notes.append(f"mask dropped: {where} does not say how it moves the flags")
            mask = m if m is not None and m.shape == y.shape else None
            if grid is not None and (g is None or (g == ((1.0, 0.0), (1.0, 0.0)) and y.shape != x.shape)):
                notes.append(f"WCS dropped: {where} does not say where its pixels lie on its input's")
                grid = None
            elif grid is not None:
                (sy, oy), (sx, ox) = grid
                (ty, py), (tx, px) = g
                grid = ((sy * ty, oy + sy * py), (sx * tx, ox + sx * px))
            x = y
        return {"grid": grid, "variance": variance is not None, "mask": mask is not None, "notes": notes}


def parse_pipeline(spec: str, *, registry: Registry | None = None) -> Pipeline:
    """Parse a pipeline spec such as ``"psf:gaussian(sigma=2)|noise:gaussian(std=4)"``.

    Parameters
    ----------
    spec : str
        See the module docstring for the grammar.
    registry : galaug.registry.Registry, optional
        Where degradations are looked up; the process-wide plugin manager's
        by default.

    Raises
    ------
    ConfigError
        One line naming the problem and its column: an unknown degradation or
        key (with the closest match), a malformed spec, a value of the wrong
        type or out of range, an unreadable kernel file.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a string, got {type(spec).__name__}")
    if registry is None:
        from galaug.pluginmanager import get_manager

        registry = get_manager().registry
    return _Parser(spec, registry).pipeline()



def as_pipeline(degrade: str | Pipeline | None, *, registry: Registry | None = None) -> Pipeline | None:
    """``degrade`` as a :class:`Pipeline`: a spec is parsed, a Pipeline kept, None (or "") stays None."""
    if degrade is None or isinstance(degrade, Pipeline):
        return degrade
    if isinstance(degrade, str) and not degrade.strip():
        return None
    return parse_pipeline(degrade, registry=registry)
