"""galaug: augment galaxy image training sets with a learned generator, and measure whether it helps."""

from galaug._version import __version__

from galaug.data import Dataset, DatasetWriter, create_dataset, make_entry, open_dataset  # noqa: E402
from galaug.errors import ConfigError, DatasetError, GalaugError, PluginError  # noqa: E402
from galaug.generators import load_generator  # noqa: E402
from galaug.hookspecs import hookimpl  # noqa: E402

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
