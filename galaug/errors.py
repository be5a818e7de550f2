"""Errors a user can cause.

Every exception here ends a command as one line on stderr and exit status 2;
anything else is a bug and keeps its traceback.
"""

import importlib
from types import ModuleType

__all__ = ["GalaugError", "DatasetError", "ConfigError", "PluginError", "require"]


class GalaugError(Exception):
    """Base class of errors caused by input (paths, options, configs, plugins)."""


class DatasetError(GalaugError):
    """A dataset is missing, malformed, or an output would clobber one."""


class ConfigError(GalaugError, ValueError):
    """A config key is unknown or its value has the wrong type."""


class PluginError(GalaugError):
    """A plugin is unknown, broken, or registered something invalid."""


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
