"""galaug: augment galaxy image training sets with a learned generator, and measure whether it helps."""

from galaug._version import __version__

from galaug.errors import ConfigError, DatasetError, GalaugError, PluginError  # noqa: E402
from galaug.hookspecs import hookimpl  # noqa: E402

#: Imported on first use (PEP 562), so that ``import galaug`` and building the CLI (``galaug --help``,
#: ``galaug plugins``) do not import zarr, astropy or torch: name -> module that defines it.
_LAZY = {"Dataset": "galaug.data", "DatasetWriter": "galaug.data", "create_dataset": "galaug.data",
         "make_entry": "galaug.data", "open_dataset": "galaug.data", "load_generator": "galaug.generators"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'galaug' has no attribute {name!r}")

__all__ = [
    "__version__",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "DatasetWriter",
    "GalaugError",
    "PluginError",
    "create_dataset",
    "hookimpl",
    "load_generator",
    "make_entry",
    "open_dataset",
]
