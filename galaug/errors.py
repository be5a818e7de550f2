"""Errors a user can cause.

Every exception here ends a command as one line on stderr and exit status 2;
anything else is a bug and keeps its traceback.
"""

__all__ = ["GalaugError", "DatasetError", "ConfigError", "PluginError"]


class GalaugError(Exception):
    """Base class of errors caused by input (paths, options, configs, plugins)."""


class DatasetError(GalaugError):
    """A dataset is missing, malformed, or an output would clobber one."""


class ConfigError(GalaugError, ValueError):
    """A config key is unknown or its value has the wrong type."""


class PluginError(GalaugError):
    """A plugin is unknown, broken, or registered something invalid."""
