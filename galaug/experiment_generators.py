"""The experiment's no-leak mode: each arm's generator trained on that arm's real images only.

With ``generator_training = "arm"`` (or ``"both"``) in the experiment file,
a generator given as a run folder is a *recipe*: its plugin, preset and
config (and its steps, or ``generator_steps``). For every arm with generated
images and every seed, the experiment picks the arm's real rows exactly as
``galaug mix`` will (:func:`arm_rows`), writes them as a subset
(``OUT/generators/subsets/<key>.zarr``), trains a generator of that recipe
on it with the seed, and mixes the arm from that generator. An arm without
real images (generated only) trains it on the whole real set, which the
arm stands for.

Training runs are cached per (recipe, subset, seed) in ``OUT/generators``:
``<key>.json`` marks a finished run; a run cut off by an interruption
resumes from its last checkpoint, so the experiment resumes too. Each run's
``options.json`` records the subset's ``data_id`` and the ``experiment``
record (recipe, rows, seed).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from galaug.errors import GalaugError

__all__ = ["MODES", "arm_rows", "arm_generator"]

#: generator_training values: the generators as given (trained on all real images), retrained per arm, or both.
MODES = ("all", "arm", "both")


def arm_rows(arm, n_real: int, seed: int) -> np.ndarray:
    """The real rows (sorted) that the mix of ``arm`` with ``seed`` takes from a real set of ``n_real`` images,
    generated images coming from a generator (:func:`galaug.mix.plan_mix`, whose real rows do not depend on
    the generated share); every row for an arm without real images."""
    from galaug.mix import plan_mix

    if arm.alpha is not None:
        plan = plan_mix(n_real=n_real, n_gen=None, alpha=arm.alpha, size=n_real, seed=seed)
    else:
        plan = plan_mix(n_real=n_real, n_gen=None, real=arm.real, gen=arm.gen, seed=seed, nested=arm.nested)
    rows = plan.real_rows
    return np.arange(n_real, dtype=np.int64) if len(rows) == 0 else np.unique(rows)


def _key(recipe_name: str, real_id: str, rows: np.ndarray, seed: int) -> str:
    digest = hashlib.sha1(real_id.encode() + np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()
    return f"{recipe_name}-{len(rows)}real-{digest[:10]}-s{seed}"


def arm_generator(recipe: str | Path, *, real, rows: np.ndarray, seed: int, out: Path, steps: int | None = None,
                  manager=None, device: str = "cpu", echo=print) -> Any:
    """The generator of one (arm, seed): a run of ``recipe`` trained on ``rows`` of ``real``; cached in ``out``.

    Returns the :class:`galaug.runs.Run`. A finished run (its ``<key>.json``)
    is reused, an interrupted one resumed, a run folder without a checkpoint
    started again.
    """
    from galaug.data import open_dataset
    from galaug.files import atomic_write_text
    from galaug.mix import mix_datasets
    from galaug.runs import Run, plan_training

    template = Run.open(recipe, kind="generator")
    rows = np.asarray(rows, dtype=np.int64)
    key = _key(template.name, real.id, rows, seed)
    run_dir, marker = out / key, out / f"{key}.json"
    if marker.is_file():
        return Run.open(run_dir, kind="generator")
    if len(rows) == len(real) and np.array_equal(rows, np.arange(len(real))):
        data = real
    else:
        subset = out / "subsets" / f"{key.rsplit('-s', 1)[0]}.zarr"
        data = None
        if subset.exists():
            try:
                data = open_dataset(subset)
                if not np.array_equal(np.sort(np.asarray(data.array("index")[:])), rows):
                    data = None
            except GalaugError:
                data = None
        if data is None:  # written whole or not at all (galaug.mix), so a leftover is only ever stale
            subset.parent.mkdir(parents=True, exist_ok=True)
            data = mix_datasets(subset, real_data=real.path, real_rows=rows, seed=seed, overwrite=True)
    record = {"generator_training": "arm", "recipe": str(Path(recipe).resolve()), "real": str(real.path),
              "real_id": real.id, "rows": int(len(rows)), "subset": str(data.path), "seed": seed}
    run = Run.open(run_dir, kind="generator") if (run_dir / "options.json").is_file() else None
    if run is not None and run.has_checkpoint() and run.data_id == data.id:
        echo(f"  generator {key}: resuming its training on {len(rows)} real images")
        plan = plan_training("generator", template.name, data.path, resume=run_dir, manager=manager)
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        echo(f"  generator {key}: training {template.name} on the arm's {len(rows)} real images (no leak)")
        plan = plan_training("generator", template.name, data.path, manager=manager,
                             preset=template.options.get("preset"), overrides=template.options.get("config") or {},
                             seed=seed, steps=steps or template.options.get("steps"), extra={"experiment": record})
    run = plan.run(plan.start(path=run_dir), device=device)
    atomic_write_text(marker, json.dumps({**record, "run": str(run.path), "data_id": data.id}, indent=2))
    return run
