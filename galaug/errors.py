"""Errors a user can cause.

Every exception here ends a command as one line on stderr and exit status 2;
anything else is a bug and keeps its traceback.
"""

import functools
import importlib
from collections.abc import Callable
from types import ModuleType

__all__ = ["GalaugError", "DatasetError", "ConfigError", "PluginError", "ParamError", "require", "one_line",
           "describe", "short", "worker_message"]


class GalaugError(Exception):
    """Base class of errors caused by input (paths, options, configs, plugins)."""


class DatasetError(GalaugError):
    """A dataset is missing, malformed, or an output would clobber one."""


class ConfigError(GalaugError, ValueError):
    """A config key is unknown or its value has the wrong type."""


class PluginError(GalaugError):
    """A plugin is unknown, broken, or registered something invalid."""


class _Spelling(dict):
    """Fields of a :class:`ParamError` template: the values given, every other field a parameter name."""

    def __init__(self, spell: Callable[[str], str], values: dict[str, object]) -> None:
        super().__init__(values)
        self.spell = spell

    def __missing__(self, name: str) -> str:
        return self.spell(name)


class ParamError(GalaugError, ValueError):
    """A bad value of a function's parameter, naming the parameters but not how a front end spells them.

    ``template`` writes every parameter as a field named after it
    (``"{gen} must be a multiple (5x), got {text!r}"``); ``values`` fill the
    other fields (user text goes here, never into the template). ``str(exc)``
    writes the parameters as the library calls them (``gen``); a front end
    writes its own spelling with :meth:`spelled` (the CLI: ``--gen``).

    Attributes
    ----------
    param : str
        The parameter whose value is at fault.
    """

    def __init__(self, param: str, template: str, **values: object) -> None:
        self.param, self.template, self.values = param, template, values
        super().__init__(self.spelled())

    def __reduce__(self):  # pickles across processes (the default passes only the message)
        return functools.partial(type(self), **self.values), (self.param, self.template)

    def spelled(self, spell: Callable[[str], str] = str) -> str:
        """The message with every parameter ``name`` written as ``spell(name)``."""
        return self.template.format_map(_Spelling(spell, self.values))


def one_line(text: str, limit: int | None = 300) -> str:
    """``text`` with its whitespace collapsed to single spaces, cut to ``limit`` characters (``...``)."""
    text = " ".join(str(text).split())
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def worker_message(text: str) -> str:
    """The message itself of an exception re-raised from a torch ``DataLoader`` worker, else ``text``.

    torch re-raises a worker's exception as the same type with the worker's
    whole traceback as its message, ending ``module.Type: message``.
    """
    if not (text.startswith("Caught ") and "\nOriginal Traceback" in text):
        return text
    lines = text.rstrip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    i = frames[-1] + 1 if frames else len(lines) - 1
    while i < len(lines) - 1 and lines[i][:1].isspace():  # the last frame's source line and its ^^^ marks
        i += 1
    _, sep, message = "\n".join(lines[i:]).partition(": ")
    return message if sep else ""


def describe(exc: BaseException, limit: int | None = 300) -> str:
    """``Type: message`` of an exception on one line (its message cut to ``limit``), for an error line.

    An exception re-raised from a ``DataLoader`` worker gets its own message, not the worker's traceback.
    """
    text = one_line(worker_message(str(exc)), limit)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def short(value: object, limit: int = 60) -> str:
    """The repr of a value someone handed galaug, cut to ``limit`` characters, never raising."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require(module: str, what: str, install: str) -> ModuleType:
    """Import the optional package ``module`` that ``what`` needs, or say how to install it.

    ``require("galsim", "the sersic source", "pip install 'galaug[astro]'")``:
    a machine without GalSim (a GPU node, say) gets one error line, not a
    ``ModuleNotFoundError`` traceback from a worker process.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise GalaugError(f"{what} needs the package {module!r}, which is not installed here ({exc}); "
                          f"{install}") from None
