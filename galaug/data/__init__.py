"""Datasets: the Zarr v3 format every step reads and writes.

The torch adapter lives in :mod:`galaug.data.torch` (imported on demand,
so that reading a dataset never imports torch).
"""

from galaug.data._format import CODECS, pixel_scale_attr, pixel_scale_quantity, set_default_codec
from galaug.data.dataset import Dataset, open_dataset
from galaug.data.ops import export_fits, split_dataset
from galaug.data.provenance import make_entry
from galaug.data.writer import DatasetWriter, create_dataset, like, write_rows

__all__ = [
    "CODECS",
    "Dataset",
    "DatasetWriter",
    "create_dataset",
    "export_fits",
    "like",
    "make_entry",
    "open_dataset",
    "pixel_scale_attr",
    "pixel_scale_quantity",
    "set_default_codec",
    "split_dataset",
    "write_rows",
]
