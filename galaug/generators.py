"""Trained generators: loading one from its run directory, and writing generated datasets.

Run directories themselves (creating, opening, resuming) are :mod:`galaug.runs`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from galaug import quality
from galaug.conditions import check_conditions, sampling_options
from galaug.data import Dataset, make_entry, open_dataset
from galaug.devices import device_name
from galaug.distributed import on_main, sharded_writer
from galaug.errors import GalaugError
from galaug.progress import progress
from galaug.runs import Run

__all__ = ["load_generator", "generate"]


def load_generator(run_dir: str | Path, *, device: str = "cpu", checkpoint: str | Path | None = None,
                   manager=None):
    """Load the trained generator of a run directory.

    Returns a :class:`galaug.kinds.GeneratorModel`: ``sample(n, seed=...)``,
    ``map(z)``, ``decode(w)``, ``encode(x)``, ``reconstruct(x)``, batched, on
    ``device``.
    """
    from galaug.pluginmanager import get_manager

    run = Run.open(run_dir, kind="generator")
    cls = run.component(manager or get_manager())
    return cls.load(run.path, device=device_name(device), checkpoint=Path(checkpoint) if checkpoint else None)


def generate(run_dir: str | Path, out: str | Path, n: int, *, seed: int = 0, truncation: float | None = None,
             batch_size: int = 256, device: str = "cpu", overwrite: bool = False, manager=None,
             edit: dict[str, float] | None = None, directions=None, allow_outliers: bool = False,
             condition: dict | None = None, guidance: float | None = None, steps: int | None = None,
             extrapolate: bool = False) -> Dataset:
    """Write ``n`` generated images, their latents ``w`` and prior samples ``z`` to a new dataset.

    Sample ``r`` depends only on ``(seed, r)``: the output does not depend on
    ``batch_size`` and any slice can be regenerated alone. ``origin`` is
    "generated"; the provenance records the run, checkpoint step, seed and
    truncation. ``edit`` (e.g. ``{"r_half": 1.0}``) moves every w that many
    standard deviations of the projection along w* of the ``directions``
    (a latent-structure report of this run, :mod:`galaug.editing`); the
    edit and the directions are recorded in the provenance.

    The quality gate (:mod:`galaug.quality`) compares the images with the
    statistics of the run's training data and records the comparison in the
    provenance (``quality``); output far outside them raises
    :class:`galaug.quality.QualityError` and nothing is written, unless
    ``allow_outliers`` (then the record says it was overridden).

    For a conditional generator (:mod:`galaug.conditions`), ``condition``
    maps params columns to one value or ``n`` values (one per sample);
    values outside the training range are refused unless ``extrapolate``.
    ``guidance`` and ``steps`` are sampler options of generators that take
    them. The condition each sample was drawn at goes into the output's
    ``params`` member; all of it is checked before anything is written.
    """
    if n < 1:
        raise GalaugError(f"n must be at least 1, got {n}")
    options = Run.open(run_dir, kind="generator").options
    model = load_generator(run_dir, device=device, manager=manager)
    editing = _editing(model, run_dir, edit, directions)
    check_conditions(model, condition, n, extrapolate=extrapolate)
    options_ = sampling_options(model, condition=condition or None, guidance=guidance, steps=steps,
                                extrapolate=extrapolate)
    names = tuple(getattr(model, "condition_names", ()))
    sampling = {k: (v if k != "condition" else _condition_record(v)) for k, v in options_.items()}
    layout = model.layout
    stores = getattr(model, "stores_latents", True)
    parents = []
    try:
        parents = [open_dataset(options["data"])] if options.get("data") else []
    except GalaugError:
        pass  # the training set moved: provenance keeps the run only
    entry = make_entry("generate", plugin=f"generator:{options['generator']}",
                       plugin_version=options.get("plugin_version"), seed=seed,
                       config={"truncation": truncation, "n": n, **editing.get("record", {}), **sampling},
                       run=str(run_dir),
                       checkpoint_step=model.step,
                       parents=[options["data_id"]] if options.get("data_id") else [])
    training, source = on_main(quality.run_stats, run_dir)
    seen = quality.StatsAccumulator(n, layout.bands, (len(layout.bands), layout.image_size, layout.image_size))
    with sharded_writer(out, n, bands=layout.bands, image_size=layout.image_size, pixel_scale=layout.pixel_scale,
                        flux_unit=layout.flux_unit, latent_dim=model.w_dim if stores else None,
                        z_dim=model.z_dim if stores else None, param_names=names or None,
                        param_units=tuple(getattr(model, "condition_units", ())) or None, provenance=entry,
                        parents=parents, overwrite=overwrite) as (writer, lo, hi), \
            progress(total=hi - lo, desc="generate") as bar:
        for start in range(lo, hi, batch_size):
            rows = range(start, min(start + batch_size, hi))
            out_ = model.sample(rows=rows, seed=seed, truncation=truncation, **editing.get("sample", {}),
                                **_rows_of(options_, rows))
            images = out_["images"].float().cpu().numpy()
            seen.add(images, np.asarray(rows))
            extra = {"latents": out_["w"].float().cpu().numpy(), "z": out_["z"].float().cpu().numpy()} if stores else {}
            if names:
                extra["params"] = out_["condition"].float().cpu().numpy()
            writer.append(images, origin=1, index=np.asarray(rows), **extra)
            bar.update(len(rows))
        # every rank gathers every rank's statistics: the same verdict everywhere; raising here writes nothing
        record = quality.gate(seen.gathered().result(), training, allow_outliers=allow_outliers,
                              where=f"the images for {out} are", source=source)
        writer.set_metadata(provenance={"quality": record})
    return open_dataset(out)


def _rows_of(options: dict, rows: range) -> dict:
    """The sampling options for ``rows``: per-sample condition values sliced, the rest as they are."""
    if "condition" not in options:
        return options
    condition = {k: (v if np.ndim(v) == 0 else np.asarray(v)[rows.start:rows.stop])
                 for k, v in options["condition"].items()}
    return {**options, "condition": condition}


def _condition_record(condition: dict) -> dict:
    """The provenance of a condition: fixed values as they are, per-sample ones as their range."""
    return {k: (float(v) if np.ndim(v) == 0 else {"per_sample": True, "min": float(np.min(v)),
                                                   "max": float(np.max(v))})
            for k, v in condition.items()}


def _editing(model, run_dir, edit, directions) -> dict:
    """For an edit: the keyword arguments of ``sample`` and the provenance record (empty without one)."""
    if not edit:
        if directions is not None:
            raise GalaugError("directions without an edit change nothing: give the edit too")
        return {}
    from galaug.editing import as_directions, can_edit

    if not can_edit(model):
        raise GalaugError(f"{run_dir}: this generator's sample() takes no edit (see docs/plugins.md)")
    directions = as_directions(directions)
    directions.shift(edit)  # unknown parameters: refused before anything is written
    directions.check(model, run=run_dir)
    return {"sample": {"edit": dict(edit), "directions": directions},
            "record": {"edit": dict(edit), "directions": directions.record(edit)}}
