"""Run directories, loading trained generators, and writing generated datasets.

A run directory (``runs/00003-alae-sersic/``) belongs to one generator and
one training dataset. ``options.json`` is written before any training
starts; the generator writes its checkpoints and ``metrics.jsonl`` beside it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from galaug._progress import progress
from galaug.data import Dataset, make_entry, open_dataset
from galaug.distributed import sharded_writer
from galaug.errors import GalaugError

__all__ = ["new_run_dir", "read_options", "write_options", "load_generator", "generate", "OPTIONS"]

OPTIONS = "options.json"
RUN_FORMAT = 1
_RUN = re.compile(r"^(\d{5})-")


def new_run_dir(root: str | Path, *, generator: str, data: str | Path) -> Path:
    """Create ``root/NNNNN-<name>-<data name>``, numbered after the existing runs (``generator`` is any plugin name)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := _RUN.match(p.name))]
    stem = Path(data).name.removesuffix(".zarr")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:40] or "data"
    index = max(taken, default=-1) + 1
    while True:
        path = root / f"{index:05d}-{generator}-{stem}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another process took this number
            index += 1


def write_options(run_dir: Path, options: dict[str, Any]) -> None:
    """Write ``options.json`` atomically."""
    tmp = run_dir / f".{OPTIONS}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({"galaug_run": RUN_FORMAT, **options}, indent=2) + "\n")
    os.replace(tmp, run_dir / OPTIONS)


def read_options(run_dir: str | Path, *, kind: str = "generator") -> dict[str, Any]:
    """The options of a run of ``kind`` (generator or task); :class:`GalaugError` if it is not one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise GalaugError(f"{run_dir}: no such run directory")
    path = run_dir / OPTIONS
    try:
        options = json.loads(path.read_text())
    except FileNotFoundError:
        raise GalaugError(f"{run_dir}: not a galaug run (no {OPTIONS})") from None
    except (OSError, ValueError) as exc:
        raise GalaugError(f"{run_dir}: unreadable {OPTIONS} ({exc})") from None
    if not isinstance(options, dict) or options.get("galaug_run") != RUN_FORMAT:
        raise GalaugError(f"{run_dir}: not a galaug run ({OPTIONS} lacks galaug_run)")
    if kind not in options:
        other = next((k for k in ("generator", "task") if k in options), None)
        raise GalaugError(f"{run_dir}: not a {kind} run" + (f" (it is a {other} run)" if other else ""))
    return options


def load_generator(run_dir: str | Path, *, device: str = "cpu", checkpoint: str | Path | None = None,
                   manager=None):
    """Load the trained generator of a run directory.

    Returns a :class:`galaug.kinds.GeneratorModel`: ``sample(n, seed=...)``,
    ``map(z)``, ``decode(w)``, ``encode(x)``, ``reconstruct(x)``, batched, on
    ``device``.
    """
    from galaug.pluginmanager import get_manager

    options = read_options(run_dir)
    cls = (manager or get_manager()).get("generator", options["generator"])
    return cls.load(Path(run_dir), device=_device(device), checkpoint=Path(checkpoint) if checkpoint else None)


def _device(device: str) -> str:
    """``auto``, ``cpu`` or ``cuda`` resolved, with a clear error when CUDA is asked for but absent."""
    from galaug.degrade import resolve_device

    return str(resolve_device(device))


def generate(run_dir: str | Path, out: str | Path, n: int, *, seed: int = 0, truncation: float | None = None,
             batch_size: int = 256, device: str = "cpu", overwrite: bool = False, manager=None) -> Dataset:
    """Write ``n`` generated images, their latents ``w`` and prior samples ``z`` to a new dataset.

    Sample ``r`` depends only on ``(seed, r)``: the output does not depend on
    ``batch_size`` and any slice can be regenerated alone. ``origin`` is
    "generated"; the provenance records the run, checkpoint step, seed and
    truncation.
    """
    if n < 1:
        raise GalaugError(f"-n must be at least 1, got {n}")
    options = read_options(run_dir)
    model = load_generator(run_dir, device=device, manager=manager)
    layout = model.layout
    parents = []
    try:
        parents = [open_dataset(options["data"])] if options.get("data") else []
    except GalaugError:
        pass  # the training set moved: provenance keeps the run only
    entry = make_entry("generate", plugin=f"generator:{options['generator']}",
                       plugin_version=options.get("plugin_version"), seed=seed,
                       config={"truncation": truncation, "n": n}, run=str(run_dir), checkpoint_step=model.step,
                       parents=[options["data_id"]] if options.get("data_id") else [])
    with sharded_writer(out, n, bands=layout.bands, image_size=layout.image_size, pixel_scale=layout.pixel_scale,
                        flux_unit=layout.flux_unit, latent_dim=model.w_dim, z_dim=model.z_dim, provenance=entry,
                        parents=parents, overwrite=overwrite) as (writer, lo, hi), \
            progress(total=hi - lo, desc="generate") as bar:
        for start in range(lo, hi, batch_size):
            rows = range(start, min(start + batch_size, hi))
            out_ = model.sample(rows=rows, seed=seed, truncation=truncation)
            writer.append(out_["images"].float().cpu().numpy(), origin=1, index=np.asarray(rows),
                          latents=out_["w"].float().cpu().numpy(), z=out_["z"].float().cpu().numpy())
            bar.update(len(rows))
    return open_dataset(out)
