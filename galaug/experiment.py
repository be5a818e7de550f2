"""The ratio experiment: train a task on several mixes of real and generated data, K seeds each.

``galaug experiment ratios CONFIG.toml`` (see docs/experiment.md)::

    task = "denoise"
    real = "real-train.zarr"                   # the real training set
    val = "real-val.zarr"                      # the independent validation set
    gen = "gen.zarr"                           # generated images (or generator = "runs/00000-alae-...")
    degrade = "psf:gaussian(sigma=2)|noise:gaussian(std=4)"
    seeds = [0, 1, 2]
    out = "runs/experiment"
    metric = "mse"                             # the summary metric of the table and figure
    allow_outliers = false                     # true: use generated images that fail the quality gate
    assume_same_scale = false                  # true: mix sets when only one has a pixel scale
    allow_domain_shift = false                 # true: a val set in other units than real is evaluated anyway
    [task_config]                              # the task's --set values
    epochs = 5

Arms default to the study's four (100% real; 10% real; 5x generated only;
5x generated + 100% real) plus 10% real + 5x generated and an alpha sweep;
``[[arms]]`` tables (``name``, ``real``, ``gen`` or ``alpha``) replace them.
Each arm and seed is a mix (``galaug mix``), a training run and an
evaluation; finished (arm, seed) pairs are skipped when the command is run
again, so an interrupted experiment resumes.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from galaug.config import read_toml, resolve_config
from galaug.errors import ConfigError, GalaugError
from galaug.quality import require_passed

__all__ = ["Arm", "ExperimentConfig", "DEFAULT_ARMS", "load_experiment", "run_experiment", "summarise"]


@dataclasses.dataclass(frozen=True)
class Arm:
    """One way of building the training set: real and generated shares, or alpha with a total size."""

    name: str
    real: str | None = "1.0"
    gen: str | None = None
    alpha: float | None = None

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


DEFAULT_ARMS = (
    Arm("100% real", real="1.0"),
    Arm("10% real", real="0.1"),
    Arm("5x gen", real="0", gen="5x"),
    Arm("5x gen + 100% real", real="1.0", gen="5x"),
    Arm("5x gen + 10% real", real="0.1", gen="5x"),
    Arm("alpha 0.5", real=None, alpha=0.5),
    Arm("alpha 0.8", real=None, alpha=0.8),
)


@dataclasses.dataclass
class ExperimentConfig:
    task: str = "denoise"
    real: str = ""
    val: str = ""
    gen: str = ""
    generator: str = ""
    degrade: str = ""
    seeds: tuple[int, ...] = (0, 1, 2)
    out: str = "runs/experiment"
    metric: str = "mse"
    device: str = "cpu"
    #: use a generated set (or generator) that fails the quality gate (galaug.quality)
    allow_outliers: bool = False
    #: mix a generated set with a pixel scale and a real set without one, or the reverse
    assume_same_scale: bool = False
    #: evaluate on a validation set in other flux units, or on another flux scale, than the real set
    allow_domain_shift: bool = False


def load_experiment(path: str | Path) -> tuple[ExperimentConfig, tuple[Arm, ...], dict[str, Any]]:
    """Read and check an experiment file: (config, arms, task config overrides)."""
    path = Path(path)
    data = read_toml(path, what="experiment file")
    arms_data = data.pop("arms", None)
    task_config = data.pop("task_config", {})
    config = resolve_config(ExperimentConfig, overrides=data)
    base = path.parent
    for key in ("real", "val", "gen", "generator", "out"):  # paths relative to the file
        value = getattr(config, key)
        if value and not Path(value).is_absolute():
            setattr(config, key, str(base / value))
    for key in ("task", "real", "val"):
        if not getattr(config, key):
            raise ConfigError(f"experiment file {path}: {key!r} is required")
    if config.gen and config.generator:
        raise ConfigError(f"experiment file {path}: give gen or generator, not both")
    if not config.seeds:
        raise ConfigError(f"experiment file {path}: seeds must not be empty")
    arms = DEFAULT_ARMS
    if arms_data is not None:
        if not isinstance(arms_data, list) or not arms_data:
            raise ConfigError(f"experiment file {path}: [[arms]] must be a non-empty list of tables")
        arms = tuple(resolve_config(Arm, overrides={"real": None, **a}) if isinstance(a, dict) and "name" in a
                     else _bad_arm(path, a) for a in arms_data)
    if not (config.gen or config.generator) and any(a.gen or a.alpha is not None for a in arms):
        raise ConfigError(f"experiment file {path}: arms use generated images but neither gen nor generator is set")
    if len({a.slug for a in arms}) != len(arms):
        raise ConfigError(f"experiment file {path}: arm names must be distinct")
    return config, arms, task_config


def _bad_arm(path: Path, arm: Any):
    raise ConfigError(f"experiment file {path}: every [[arms]] table needs a name, got {arm!r}")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def run_experiment(config: ExperimentConfig, arms: tuple[Arm, ...], task_config: dict[str, Any], *,
                   manager=None, echo=print, overwrite: bool = False, inputs: list[str | Path] = ()) -> Path:
    """Run every (arm, seed) not finished yet, then write the results; returns the output folder.

    With ``overwrite``, once everything is checked, the output folder is
    deleted first and the experiment starts afresh: only a folder that holds
    nothing but an experiment's output, and none of the experiment's data or
    ``inputs`` (its TOML file).
    """
    from galaug.data import open_dataset
    from galaug.degrade import as_pipeline
    from galaug.files import atomic_write_text
    from galaug.pluginmanager import get_manager
    from galaug.runs import evaluate_run, plan_training

    manager = manager or get_manager()
    cls = manager.get("task", config.task)
    resolve_config(cls.Config, overrides=task_config)  # a bad task config fails before any work
    pipeline = as_pipeline(config.degrade)  # parsed once, for every arm's training and evaluation
    real, val = open_dataset(config.real), open_dataset(config.val)
    with _spelled_for_the_file():  # a validation set in other units than the training data: before any work
        from galaug.domain import data_domain, require_same_domain

        require_same_domain(data_domain(real), val, allow_domain_shift=config.allow_domain_shift,
                            what=f"the real set {Path(config.real).name}")
    if config.gen:  # a generated set that failed the quality gate, or does not fit, stops it before any work
        from galaug.mix import _check_compatible

        gen = open_dataset(config.gen)
        with _spelled_for_the_file():
            require_passed(gen, allow_outliers=config.allow_outliers)
            _check_compatible(real, gen.bands, gen.image_shape, gen.pixel_scale, config.gen,
                              assume_same_scale=config.assume_same_scale)
    out = Path(config.out)
    if overwrite:  # nothing is deleted for an experiment that would fail its checks
        _start_afresh(out, inputs=[*inputs, config.real, config.val, config.gen, config.generator])
    for sub in ("mixes", "runs", "results"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    total = len(arms) * len(config.seeds)
    done = 0
    for arm in arms:
        for seed in config.seeds:
            done += 1
            tag = f"{arm.slug}-s{seed}"
            result = out / "results" / f"{tag}.json"
            if result.exists():
                echo(f"[{done}/{total}] {arm.name}, seed {seed}: done before, skipped")
                continue
            echo(f"[{done}/{total}] {arm.name}, seed {seed}")
            with _spelled_for_the_file():
                mix = _mix(arm, out / "mixes" / f"{tag}.zarr", config, real, seed)
            run_path = out / "runs" / tag
            if run_path.exists():  # an interrupted training of this pair: start it again
                shutil.rmtree(run_path)
            plan = plan_training("task", config.task, mix.path, manager=manager, overrides=task_config, seed=seed,
                                 degrade=pipeline, extra={"arm": arm.name})
            run = plan.run(plan.start(path=run_path), device=config.device)
            # val was checked against the real set before any work; an arm whose mix is on another scale
            # (a faint generator) is measured, its shift recorded in its metrics, rather than stopping the rest
            metrics, _ = evaluate_run(run, val.path, degrade=pipeline, device=config.device, seed=0,
                                      allow_domain_shift=True, manager=manager)
            counts = mix.origin_counts()
            atomic_write_text(result, json.dumps({"arm": dataclasses.asdict(arm), "seed": seed,
                                                  "n_real": counts["real"], "n_generated": counts["generated"],
                                                  "metrics": metrics}, indent=2))
    summarise(out, arms, config.seeds, metric=config.metric)
    return out


#: What an experiment writes into its output folder.
_OWN = frozenset({"mixes", "runs", "results", "results.csv", "results.json", "results.md", "results.png"})


def _start_afresh(out: Path, *, inputs: list[str]) -> None:
    """Delete the experiment folder ``out`` (``--overwrite``), refusing anything but an experiment's own output.

    The folder is first renamed out of the way, so an interrupted delete
    never leaves a half folder that a later run would resume.
    """
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise GalaugError(f"{out}: not an experiment output folder; --overwrite deletes only such a folder")
    resolved = out.resolve()
    here = Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        raise GalaugError(f"{out}: --overwrite does not delete the current folder or one above it")
    for path in inputs:
        if path and (resolved == Path(path).resolve() or resolved in Path(path).resolve().parents):
            raise GalaugError(f"{out}: --overwrite would delete {path}, an input of the experiment")
    strangers = sorted(p.name for p in resolved.iterdir() if p.name not in _OWN)
    if strangers:
        raise GalaugError(f"{out}: holds {', '.join(strangers[:3])}{', ...' if len(strangers) > 3 else ''}, "
                          "not only an experiment's output; --overwrite deletes only such a folder")
    trash = resolved.with_name(f".{resolved.name}.overwritten-{os.getpid()}")
    resolved.rename(trash)
    shutil.rmtree(trash)


@contextlib.contextmanager
def _spelled_for_the_file() -> Iterator[None]:
    """A refusal that a key overrides names the experiment file's key (``allow_outliers = true``)."""
    from galaug.errors import ParamError

    try:
        yield
    except ParamError as exc:
        if exc.param not in ("allow_outliers", "assume_same_scale", "allow_domain_shift"):
            raise
        raise GalaugError(exc.spelled(lambda name: f"{name} = true in the experiment file")) from None


def _mix(arm: Arm, path: Path, config: ExperimentConfig, real, seed: int):
    """The training set of one (arm, seed): a mix of the real set and generated images."""
    from galaug.mix import mix_datasets

    gen_kw = {"gen_data": config.gen or None, "generator": config.generator or None,
              "allow_outliers": config.allow_outliers, "assume_same_scale": config.assume_same_scale}
    if arm.alpha is not None:
        return mix_datasets(path, real_data=real.path, alpha=arm.alpha, size=len(real), seed=seed, overwrite=True,
                            **gen_kw)
    if arm.gen:
        return mix_datasets(path, real_data=real.path, real=arm.real, gen=arm.gen, seed=seed, overwrite=True,
                            **gen_kw)
    return mix_datasets(path, real_data=real.path, real=arm.real, seed=seed, overwrite=True)


def summarise(out: Path, arms: tuple[Arm, ...], seeds, *, metric: str) -> dict[str, Any]:
    """Write results.csv, results.json, results.md and results.png from the per-run results."""
    rows = []
    for arm in arms:
        for seed in seeds:
            path = out / "results" / f"{arm.slug}-s{seed}.json"
            if not path.exists():
                continue
            r = json.loads(path.read_text())
            summary = r["metrics"].get("summary", r["metrics"])
            for test_set, values in summary.items():
                for name, value in _flatten(values if isinstance(values, dict) else {"value": values}).items():
                    rows.append({"arm": arm.name, "seed": seed, "n_real": r["n_real"], "n_generated": r["n_generated"],
                                 "test_set": test_set, "metric": name, "value": value})
    if not rows:
        raise GalaugError(f"{out}: no finished runs to summarise")
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    names = sorted({r["metric"] for r in rows})
    chosen = metric if metric in names else next((n for n in names if n.endswith(metric)), None)
    if chosen is None:
        raise GalaugError(f"metric {metric!r} is not reported by the task (it reports: {', '.join(names)})")
    test_sets = list(dict.fromkeys(r["test_set"] for r in rows))
    table: dict[str, dict[str, dict[str, float]]] = {}
    for arm in arms:
        for ts in test_sets:
            values = [r["value"] for r in rows if r["arm"] == arm.name and r["test_set"] == ts and r["metric"] == chosen]
            if values:
                table.setdefault(arm.name, {})[ts] = {"mean": float(np.mean(values)),
                                                      "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                                                      "n": len(values)}
    result = {"metric": chosen, "test_sets": test_sets, "table": table, "rows": rows}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| arm | " + " | ".join(test_sets) + " |", "|---" * (len(test_sets) + 1) + "|"]
    for arm_name, cells in table.items():
        lines.append(f"| {arm_name} | " + " | ".join(
            f"{cells[ts]['mean']:.4g} ± {cells[ts]['std']:.2g} (n={cells[ts]['n']})" if ts in cells else "-"
            for ts in test_sets) + " |")
    (out / "results.md").write_text(f"{chosen}, mean ± std over seeds\n\n" + "\n".join(lines) + "\n")
    _plot(out / "results.png", table, test_sets, chosen)
    return result


def _plot(path: Path, table, test_sets, metric: str) -> None:
    from galaug.viz import pyplot

    plt = pyplot()

    arms = list(table)
    fig, axes = plt.subplots(1, len(test_sets), figsize=(3.2 * len(test_sets), 3.4), squeeze=False)
    for ax, ts in zip(axes[0], test_sets):
        means = [table[a].get(ts, {}).get("mean", math.nan) for a in arms]
        stds = [table[a].get(ts, {}).get("std", 0.0) for a in arms]
        ax.bar(range(len(arms)), means, yerr=stds, capsize=3, color=[f"C{i}" for i in range(len(arms))])
        ax.set_xticks(range(len(arms)), arms, rotation=60, ha="right", fontsize=7)
        ax.set_title(ts, fontsize=9)
    axes[0][0].set_ylabel(metric)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
