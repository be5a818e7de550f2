"""Degradations: PSFs, noise and resampling, batched on torch tensors, composed into pipelines.

The components (:mod:`galaug.degrade.psf`, :mod:`galaug.degrade.noise`,
:mod:`galaug.degrade.resample`) are registered lazily by the built-in
plugin :mod:`galaug.builtin.degradations`; importing this package does not
import torch. See ``docs/degradations.md``.
"""

from galaug.devices import resolve_device
from galaug.degrade.pipeline import Pipeline, Step, as_pipeline, parse_pipeline

__all__ = ["Pipeline", "Step", "as_pipeline", "degrade_dataset", "derive_seeds", "parse_pipeline", "resolve_device"]


def __getattr__(name: str):
    """``degrade_dataset`` is imported on first use: it reads and writes datasets (zarr, astropy), which
    building a pipeline or listing plugins does not need (PEP 562); ``derive_seeds`` too (numpy)."""
    if name == "derive_seeds":
        from galaug.degrade.seeds import derive_seeds

        globals()[name] = derive_seeds
        return derive_seeds
    if name == "degrade_dataset":
        from galaug.degrade.dataset import degrade_dataset

        globals()[name] = degrade_dataset
        return degrade_dataset
    raise AttributeError(f"module 'galaug.degrade' has no attribute {name!r}")

