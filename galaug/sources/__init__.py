"""Sources of real images: file readers and ``galaug ingest``.

The readers are in :mod:`galaug.sources.readers`, registered lazily by the
built-in plugin :mod:`galaug.builtin.readers`.
"""

from galaug.sources.ingest import IngestReport, find_inputs, ingest

__all__ = ["IngestReport", "find_inputs", "ingest"]
