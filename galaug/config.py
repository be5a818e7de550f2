"""Typed configs: a dataclass of defaults, a TOML file, ``--set key=value``.

Every value is checked against the field's annotation, and an unknown key
is an error that names it (with the closest valid key), so a typo never
turns silently into a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from galaug.errors import ConfigError

__all__ = ["resolve_config", "preset_values", "parse_set", "config_to_dict", "config_to_toml", "convert", "read_toml", "InvalidConfig"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null"}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown(key: str, valid: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
    return ConfigError(f"unknown config key {key!r}{where}{hint}")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def convert(value: Any, tp: Any, key: str) -> Any:
    """Check or convert ``value`` (a TOML value or a ``--set`` string) to type ``tp``.

    Strings are parsed (``"3"`` to 3 for an ``int`` field, ``"1,2"`` for a
    tuple); other values must already have the right type, except that an
    ``int`` is accepted for a ``float`` field.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if isinstance(value, str) and value.strip().lower() in _NONE and type(None) in args:
            return None
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        finite = [e for e in errors if "expects a finite number" in e]  # nan or inf: say that, not the union
        raise ConfigError(finite[0] if finite else f"config key {key!r} expects {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(f"config key {key!r} must be one of {', '.join(map(repr, args))}, got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value.strip().removeprefix("[").removesuffix("]").removeprefix("(").removesuffix(")")
            value = [_unquote(v.strip()) for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} expects a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [convert(v, args[0], key) for v in value]
        elif origin is tuple and args:
            if len(value) != len(args):
                raise ConfigError(f"config key {key!r} expects {len(args)} values, got {len(value)}")
            items = [convert(v, a, key) for v, a in zip(value, args)]
        else:
            items = [convert(v, args[0], key) if args else v for v in value]
        return origin(items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"config key {key!r} expects true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"config key {key!r} expects an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        raise ConfigError(f"config key {key!r} expects a {'finite ' if number is not None else ''}number, "
                          f"got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {key!r} expects a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"config key {key!r} expects a path, got {value!r}")
    if tp is Any:
        return value
    raise ConfigError(f"config key {key!r} has a type galaug cannot parse: {_type_name(tp)}")


def _unquote(text: str) -> str:
    """``'g'`` or ``"g"`` to ``g``: list items written as in TOML (``--set 'bands=["g", "r"]'``)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def parse_set(item: str) -> tuple[str, str]:
    """Split ``"key=value"`` (``key`` may be dotted for nested configs)."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    return key, value


def _apply(cls: type, values: dict[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """Convert a nested mapping against dataclass ``cls``; returns constructor kwargs."""
    types_ = _field_types(cls)
    out: dict[str, Any] = {}
    for key, value in values.items():
        full = prefix + key
        if key not in types_:
            raise _unknown(full, [prefix + k for k in types_], where)
        tp = types_[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full!r} is a table, got {value!r}")
            out[key] = _apply(tp, value, where, prefix=full + ".")
        else:
            out[key] = convert(value, tp, full)
    return out


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


class InvalidConfig(ConfigError):
    """Values of the right types that the plugin's own checks (its Config's ``__post_init__``) refuse."""


def _build(cls: type, kwargs: dict[str, Any], *, check: bool = True) -> Any:
    types_ = _field_types(cls)
    built = {}
    for key, value in kwargs.items():
        tp = types_[key]
        built[key] = (_build(tp, value, check=check) if dataclasses.is_dataclass(tp) and isinstance(value, dict)
                      else value)
    if not check:
        return _unchecked(cls, built)
    try:
        return cls(**built)
    except (TypeError, ValueError) as exc:  # __post_init__ checks of the plugin
        raise InvalidConfig(f"invalid config: {exc}") from None


def _unchecked(cls: type, values: dict[str, Any]) -> Any:
    """An instance of dataclass ``cls`` with ``values`` over the defaults, without running ``__post_init__``."""
    obj = object.__new__(cls)
    for f in dataclasses.fields(cls):
        if f.name in values:
            value = values[f.name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            try:
                value = f.default_factory()
            except (TypeError, ValueError):
                value = _unchecked(f.default_factory, {}) if dataclasses.is_dataclass(f.default_factory) else None
        else:
            raise ConfigError(f"config key {f.name!r} has no default; give it")
        object.__setattr__(obj, f.name, value)
    return obj


def read_toml(path: str | Path, *, what: str) -> dict[str, Any]:
    """The TOML file at ``path``; a :class:`ConfigError` that names ``what`` and the path if it cannot be."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r} cannot be read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {str(path)!r} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{what} {str(path)!r} is not valid TOML: nested too deeply") from None


def preset_values(cls: type, preset: str | None, *, name: str) -> dict[str, Any] | None:
    """The config overrides of ``preset`` from the component class ``cls`` (None for no preset).

    Raises :class:`ConfigError` naming the presets there are.
    """
    if preset is None:
        return None
    presets = getattr(cls, "presets", None) or {}
    if preset not in presets:
        raise ConfigError(f"unknown preset {preset!r} for {name} (presets: {', '.join(presets) or 'none'})")
    return dict(presets[preset])


def resolve_config(cls: type, *, file: str | Path | None = None, sets: typing.Iterable[str] = (),
                   overrides: dict[str, Any] | None = None, base: dict[str, Any] | None = None,
                   check: bool = True) -> Any:
    """Build an instance of dataclass ``cls`` from defaults, a TOML file and ``--set`` items.

    Later sources win: defaults, then ``base`` (a preset), then ``file``,
    then ``overrides`` (values from typed command-line options), then
    ``sets``. With ``check=False``
    the plugin's own checks (``__post_init__``) are skipped, so that a config
    they refuse can still be shown (``galaug config``); every key and type
    is checked all the same.

    Raises
    ------
    ConfigError
        Naming the key, for an unknown key, a wrong type or an unreadable file;
        :class:`InvalidConfig` when the plugin's checks refuse the values.
    """
    values: dict[str, Any] = _apply(cls, base, " (from the preset)") if base else {}
    if file is not None:
        path = Path(file)
        data = read_toml(path, what="config file")
        values = _merge(values, _apply(cls, data, f" in {path}"))
    if overrides:
        values = _merge(values, _apply(cls, overrides, ""))
    for item in sets:
        key, raw = parse_set(item)
        nested: dict[str, Any] = {}
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = raw
        values = _merge(values, _apply(cls, nested, " (from --set)"))
    return _build(cls, values, check=check)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-serialisable dict of a config dataclass (paths as strings, tuples as lists)."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return clean(dataclasses.asdict(config))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def config_to_toml(config: Any, *, unset: bool = False) -> str:
    """The config as TOML that :func:`resolve_config` reads back.

    ``None`` values are omitted, or, with ``unset``, written as comments
    that name the key and its type (``# sigma: unset (float | tuple[float, ...])``).
    """
    lines: list[str] = []

    def emit(d: dict, table: str, cls: Any) -> None:
        types_ = _field_types(cls) if dataclasses.is_dataclass(cls) else {}
        if table:
            lines.append(f"\n[{table}]")
        for k, v in d.items():
            if v is not None and not isinstance(v, dict):
                lines.append(f"{k} = {_toml_value(v)}")
            elif v is None and unset:
                kind = _type_name(types_[k]).removesuffix(" | None") if k in types_ else "any"
                lines.append(f"# {k}: unset ({kind})")
        for k, v in d.items():
            if isinstance(v, dict):
                emit(v, f"{table}.{k}" if table else k, types_.get(k))

    emit(config_to_dict(config), "", type(config))
    return "\n".join(lines).lstrip("\n") + "\n"
