"""The intensity transform moved to galaug's core (:mod:`galaug.stretch`) so every generator can use it."""

from galaug.stretch import IntensityTransform

__all__ = ["IntensityTransform"]
