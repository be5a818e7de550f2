"""Running a simulator into a dataset: batches drawn (optionally in worker processes) and written as they come."""

from __future__ import annotations

import importlib
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np

from galaug.config import config_to_dict
from galaug.data import Dataset, make_entry, open_dataset
from galaug.distributed import sharded_writer
from galaug.errors import GalaugError
from galaug.kinds import Simulator
from galaug.progress import progress
from galaug.registry import component_version

__all__ = ["simulate"]


def _draw(job: tuple[str, str, Any, int, int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    module, qualname, config, start, stop, seed = job
    cls = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    return cls(config).draw(range(start, stop), seed=seed)


def simulate(simulator: Simulator | str, out: str | Path, n: int, *, seed: int = 0, config: Any = None,
             batch_size: int = 64, workers: int = 1, overwrite: bool = False, manager=None) -> Dataset:
    """Draw ``n`` images with a simulator and write them to a new dataset.

    Parameters
    ----------
    simulator : Simulator or str
        An instance, or the name of a registered simulator (``"sersic"``, ``"bulgedisk"``).
    out : str or Path
        The dataset to create; it appears only when complete.
    n : int
        Number of images.
    seed : int
        Row ``r`` depends only on ``(seed, r)``: batch size and workers do not change the output.
    config : dataclass, optional
        The simulator's config when ``simulator`` is a name (its defaults otherwise).
    batch_size : int
        Images drawn per call and per worker job; memory is bounded by ``workers * batch_size``.
    workers : int
        Processes drawing in parallel (1: in this process).
    """
    if isinstance(simulator, str):
        from galaug.pluginmanager import get_manager

        cls = (manager or get_manager()).get("source", simulator)
        if not issubclass(cls, Simulator):
            raise GalaugError(f"source {simulator!r} is a reader, not a simulator: use `galaug ingest`")
        simulator = cls(config)
    if n < 1:
        raise GalaugError(f"-n must be at least 1, got {n}")
    layout = simulator.layout()
    cls = type(simulator)
    entry = make_entry("simulate", plugin=f"source:{cls.name}", plugin_version=component_version(cls),
                       config=config_to_dict(simulator.config), seed=seed, n=n)
    with sharded_writer(out, n, bands=layout.bands, image_size=layout.image_size, pixel_scale=layout.pixel_scale,
                        flux_unit=layout.flux_unit, param_names=layout.param_names or None,
                        param_units=layout.param_units or None, provenance=entry,
                        overwrite=overwrite) as (writer, lo, hi), \
            progress(total=hi - lo, desc=f"simulate {cls.name}") as bar:
        jobs = [(cls.__module__, cls.__qualname__, simulator.config, s, min(s + batch_size, hi), seed)
                for s in range(lo, hi, batch_size)]
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                window = 2 * workers  # batches in flight: bounds memory whatever n
                for w in range(0, len(jobs), window):
                    for (images, params), job in zip(pool.imap(_draw, jobs[w:w + window]), jobs[w:w + window]):
                        writer.append(images, params=params)
                        bar.update(job[4] - job[3])
        else:
            for job in jobs:
                images, params = simulator.draw(range(job[3], job[4]), seed=seed)
                writer.append(images, params=params)
                bar.update(job[4] - job[3])
    return open_dataset(out)
