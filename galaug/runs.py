"""Runs: one place that creates, opens and resumes every training run, of any kind.

A run directory (``runs/00003-alae-sersic/``) belongs to one plugin (a
generator or a task) and one training dataset. It holds

- ``options.json``, written before any work starts: the kind and plugin, its
  version, the resolved config, the data and its id, the seed, the canonical
  degradation spec (tasks), the command line;
- ``metrics.jsonl``: one JSON line per logged step or epoch;
- ``checkpoints/``: kept by a :class:`galaug.checkpoints.CheckpointStore`;
- ``data_stats.json`` (generators): the statistics of the training data,
  which :mod:`galaug.quality` holds generated images to;
- whatever the plugin adds (sample grids).

Three layers, each usable alone:

- :func:`new_run_dir`, :func:`read_options`, :func:`write_options`: the files;
- :class:`Run`: a run directory opened or created, with the checks a
  command makes (the kind, the plugin, the data it was trained on) and the
  plugin's config and degradation rebuilt from ``options.json``;
  :func:`plan_training` resolves everything a ``train`` command needs
  (new or resumed) and :meth:`TrainingPlan.run` trains, removing a new run
  that failed before its first checkpoint;
- :class:`Training`: the scaffolding a plugin's training loop uses, so that
  a new generator or task writes its model and its step, never its own run
  bookkeeping: checkpoint cadence, exact resume (RNG states), ``metrics.jsonl``
  trimmed on resume, rank-0 logging, this rank's part of every batch, a
  progress bar and a closing summary line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from galaug import distributed
from galaug.checkpoints import CheckpointStore, numbered_checkpoints, trim_metrics
from galaug.errors import GalaugError

if TYPE_CHECKING:
    from galaug.data import Dataset
    from galaug.degrade import Pipeline

__all__ = ["OPTIONS", "METRICS", "DATA_STATS", "RUN_KINDS", "new_run_dir", "read_options", "write_options", "Run",
           "TrainingPlan", "plan_training", "baseline_names", "evaluate_run", "Training", "rank_rows",
           "config_from_options", "check_image_data", "layout_record"]

OPTIONS = "options.json"
METRICS = "metrics.jsonl"
#: The statistics of a generator run's training data (written by :meth:`TrainingPlan.run`, see galaug.quality).
DATA_STATS = "data_stats.json"
RUN_FORMAT = 1
#: The kinds of plugin that train in a run directory; ``options.json`` names the plugin under its kind.
RUN_KINDS = ("generator", "task")
_NUMBERED = re.compile(r"^(\d{5})-")


# -- the files -------------------------------------------------------------------------------

def new_run_dir(root: str | Path, *, name: str, data: str | Path) -> Path:
    """Create ``root/NNNNN-<name>-<data name>``, numbered after the runs already there (``name``: the plugin)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := _NUMBERED.match(p.name))]
    stem = Path(data).name.removesuffix(".zarr")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:40] or "data"
    index = max(taken, default=-1) + 1
    while True:
        path = root / f"{index:05d}-{name}-{stem}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another process took this number
            index += 1


def write_options(run_dir: str | Path, options: Mapping[str, Any]) -> None:
    """Write ``options.json`` atomically (with the run-format tag)."""
    from galaug.files import atomic_write_text

    atomic_write_text(Path(run_dir) / OPTIONS, json.dumps({"galaug_run": RUN_FORMAT, **options}, indent=2) + "\n")


def read_options(run_dir: str | Path, *, kind: str | None = None) -> dict[str, Any]:
    """The options of a run (of ``kind``, generator or task, when given).

    Raises
    ------
    GalaugError
        No such directory, no or an unreadable ``options.json``, or a run of
        another kind ("not a task run (it is a generator run)").
    """
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
    found = next((k for k in RUN_KINDS if k in options), None)
    if found is None:
        raise GalaugError(f"{run_dir}: not a galaug run ({OPTIONS} names no generator or task)")
    if kind is not None and found != kind:
        raise GalaugError(f"{run_dir}: not a {kind} run (it is a {found} run)")
    return options


def config_from_options(cls: type, values: Mapping[str, Any] | None) -> Any:
    """A plugin's ``Config`` rebuilt from the dict stored in a run or a checkpoint (checked like ``--set``)."""
    from galaug.config import resolve_config

    return resolve_config(cls.Config, overrides=dict(values or {}))


# -- a run directory ---------------------------------------------------------------------------

class Run:
    """One run directory and its ``options.json``.

    Open an existing one with :meth:`open`; a new one comes from
    :meth:`create` (or :func:`plan_training`).

    Attributes
    ----------
    path : Path
    options : dict
        The contents of ``options.json``.
    kind : str
        ``"generator"`` or ``"task"``.
    name : str
        The plugin's registered name.
    """

    def __init__(self, path: str | Path, options: dict[str, Any]) -> None:
        self.path = Path(path)
        self.options = options
        self.kind = next(k for k in RUN_KINDS if k in options)
        self.name = options[self.kind]
        self._pipeline: Pipeline | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, {self.kind}={self.name!r})"

    # -- opening and creating -------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, kind: str | None = None, name: str | None = None) -> Run:
        """The run at ``path``; :class:`GalaugError` if it is not a run of ``kind`` (and plugin ``name``)."""
        run = cls(path, read_options(path, kind=kind))
        if name is not None and run.name != name:
            raise GalaugError(f"{path}: is a {run.name!r} run, not {name!r}")
        return run

    @classmethod
    def create(cls, options: Mapping[str, Any], *, root: str | Path | None = None,
               path: str | Path | None = None) -> Run:
        """A new run with ``options`` written first: numbered under ``root``, or exactly at ``path``.

        Under several processes rank 0 makes the directory and every rank
        gets its path. ``path`` must not exist yet (or be empty).
        """
        options = dict(options)
        kind = next((k for k in RUN_KINDS if k in options), None)
        if kind is None:
            raise ValueError(f"run options need one of {', '.join(RUN_KINDS)}")
        if (root is None) == (path is None):
            raise ValueError("give root or path")

        def make() -> Path:
            if path is not None:
                target = Path(path)
                target.mkdir(parents=True, exist_ok=True)
                if any(target.iterdir()):
                    raise GalaugError(f"{target}: already exists and is not empty")
            else:
                target = new_run_dir(root, name=options[kind], data=options.get("data") or "data")
            write_options(target, options)
            return target

        return cls(distributed.on_main(make), options)

    # -- what it holds -------------------------------------------------------------
    @property
    def data(self) -> str | None:
        return self.options.get("data")

    @property
    def data_id(self) -> str | None:
        return self.options.get("data_id")

    @property
    def seed(self) -> int:
        return int(self.options.get("seed") or 0)

    @property
    def degrade(self) -> str | None:
        """The canonical degradation spec the run was trained with (tasks), or None."""
        return self.options.get("degrade")

    @property
    def pipeline(self) -> Pipeline | None:
        """:attr:`degrade` parsed (once)."""
        if self._pipeline is None and self.degrade:
            from galaug.degrade import parse_pipeline

            self._pipeline = parse_pipeline(self.degrade)
        return self._pipeline

    def component(self, manager=None) -> type:
        """The plugin class of this run, from ``manager`` (the process-wide one by default)."""
        from galaug.pluginmanager import get_manager

        return (manager or get_manager()).get(self.kind, self.name)

    def config(self, cls: type) -> Any:
        """The plugin's resolved config, rebuilt from ``options.json``."""
        return config_from_options(cls, self.options.get("config"))

    def check_data(self, ds: Dataset) -> None:
        """:class:`GalaugError` unless ``ds`` is the dataset this run was trained on (same id)."""
        if self.data_id != ds.id:
            raise GalaugError(f"{self.path}: was trained on {self.data} (id {str(self.data_id)[:8]}), "
                              f"not on {ds.path} (id {ds.id[:8]})")

    def checkpoints(self) -> list[Path]:
        """Numbered checkpoint files, newest first (whatever the plugin's format)."""
        return numbered_checkpoints(self.path / "checkpoints")

    def has_checkpoint(self) -> bool:
        """True once anything was checkpointed (numbered or named, such as ``best.pt``)."""
        return any((self.path / "checkpoints").glob("*.pt"))

    def metrics(self, last: int | None = None) -> list[dict[str, Any]]:
        """The lines of ``metrics.jsonl`` (the last ``last``), skipping a line cut off by a kill."""
        path = self.path / METRICS
        if not path.exists():
            return []
        lines = path.read_text().splitlines()
        out = []
        for line in lines[-last:] if last else lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def samples(self) -> list[Path]:
        """Sample grids written by the run (``samples-*.png``), oldest first."""
        return sorted(self.path.glob("samples-*.png"))

    def describe(self, *, metrics: int = 3) -> dict[str, Any]:
        """What ``galaug info RUN`` shows: kind, plugin, data, steps done, last checkpoint, metrics tail."""
        tail = self.metrics(metrics)
        done = None
        for record in reversed(tail):
            done = record.get("step", record.get("epoch"))
            if done is not None:
                break
        newest = self.checkpoints()
        return {
            "path": str(self.path), "kind": self.kind, "plugin": self.name,
            "plugin_version": self.options.get("plugin_version"), "preset": self.options.get("preset"),
            "data": self.data, "data_id": self.data_id, "seed": self.options.get("seed"),
            "degrade": self.degrade, "steps": self.options.get("steps"), "done": done,
            "counter": "epoch" if tail and "epoch" in tail[-1] and "step" not in tail[-1] else "step",
            "checkpoint": str(newest[0]) if newest else None, "samples": [str(p) for p in self.samples()[-1:]],
            "command": self.options.get("command"), "metrics": tail,
        }

    def summary_line(self) -> str:
        """One line at the end of a training: steps done, last losses, newest checkpoint and samples."""
        d = self.describe(metrics=1)
        parts = [f"done: {self.path}"]
        if d["done"] is not None:
            parts.append(f"{d['counter']} {d['done']}")
        last = d["metrics"][-1] if d["metrics"] else {}
        losses = [f"{k} {v:.4g}" for k, v in last.items()
                  if "loss" in k and isinstance(v, (int, float)) and not isinstance(v, bool)]
        if losses:
            parts.append(", ".join(losses))
        if d["checkpoint"]:
            parts.append(f"checkpoint {d['checkpoint']}")
        if d["samples"]:
            parts.append(f"samples {d['samples'][0]}")
        return "; ".join(parts)


# -- planning and running a training ----------------------------------------------------------

@dataclasses.dataclass
class TrainingPlan:
    """Everything a training needs, resolved and checked before anything is written.

    ``options`` is what ``options.json`` will hold (``--dry-run`` prints it);
    ``resume`` is the run being continued, if any.
    """

    kind: str
    cls: type
    config: Any
    data: Dataset
    options: dict[str, Any]
    resume: Run | None = None

    pipeline: Pipeline | None = None

    @property
    def name(self) -> str:
        return self.options[self.kind]

    def start(self, *, root: str | Path | None = None, path: str | Path | None = None) -> Run:
        """The resumed run, or a new one (numbered under ``root``, or at ``path``) with its options written."""
        if self.resume is not None:
            return self.resume
        return Run.create(self.options, root=root, path=path)

    def run(self, run: Run, *, device: str = "cpu") -> Run:
        """Train the plugin in ``run``; a new run that fails before its first checkpoint is removed.

        A generator run gets the statistics of its training data
        (``data_stats.json``, :mod:`galaug.quality`) first, unless it has them.
        """
        plugin = self.cls(self.config)
        kwargs: dict[str, Any] = {"device": device, "seed": self.options["seed"], "resume": self.resume is not None}
        if self.kind == "generator":
            kwargs["steps"] = self.options.get("steps")
        else:
            kwargs["degrade"] = self.pipeline
        try:
            if self.kind == "generator" and not (run.path / DATA_STATS).is_file():
                from galaug.quality import write_run_stats

                distributed.on_main(write_run_stats, run.path, self.data)  # rank 0 writes; every rank waits
            plugin.train(self.data.path, run.path, **kwargs)
        except GalaugError:
            if distributed.is_main() and self.resume is None and not run.has_checkpoint():
                shutil.rmtree(run.path, ignore_errors=True)  # nothing trained: leave no empty run behind
            raise
        return run


def plan_training(kind: str, name: str, data: str | Path, *, manager=None, resume: str | Path | None = None,
                  preset: str | None = None, config_file: str | Path | None = None, sets=(),
                  overrides: Mapping[str, Any] | None = None, seed: int = 0, steps: int | None = None,
                  degrade: str | Pipeline | None = None, extra: Mapping[str, Any] | None = None) -> TrainingPlan:
    """Resolve a training of plugin ``name`` of ``kind`` on ``data``: new, or continuing ``resume``.

    A new run takes its config from the defaults, ``preset`` (generators),
    ``config_file``, ``overrides`` and ``sets`` (in that order); the
    degradation (tasks) is parsed once and stored in canonical form. A
    resumed run keeps its own config, degradation and seed: only ``steps``
    (generators) may change, and the data must be the dataset it was
    trained on.

    Raises
    ------
    GalaugError
        An unknown plugin or preset, a bad config or degradation, a run of
        another kind or plugin, other data, or config options given with
        ``resume``.
    """
    from galaug.config import config_to_dict, preset_values, resolve_config
    from galaug.data import open_dataset
    from galaug.data.provenance import current_command
    from galaug.pluginmanager import get_manager
    from galaug.registry import component_version

    if kind not in RUN_KINDS:
        raise ValueError(f"kind must be one of {', '.join(RUN_KINDS)}, got {kind!r}")
    cls = (manager or get_manager()).get(kind, name)
    ds = open_dataset(data)
    if resume is not None:
        run = Run.open(resume, kind=kind, name=name)
        run.check_data(ds)
        if preset or config_file or sets or overrides or degrade:
            given = "--preset/--config/--set" + ("/--degrade" if kind == "task" else "")
            raise GalaugError(f"--resume continues a run with its own config; drop {given}")
        options = dict(run.options)
        options.pop("galaug_run", None)
        if steps is not None:
            options["steps"] = steps
        return TrainingPlan(kind, cls, run.config(cls), ds, options, resume=run, pipeline=run.pipeline)
    config = resolve_config(cls.Config, base=preset_values(cls, preset, name=name), file=config_file, sets=sets, overrides=overrides)
    options: dict[str, Any] = {kind: name, "plugin_version": component_version(cls)}
    if kind == "generator":
        options["preset"] = preset
    options.update(config=config_to_dict(config), data=str(Path(data).resolve()), data_id=ds.id)
    pipeline = None
    if kind == "task":
        from galaug.degrade import as_pipeline

        from galaug.domain import data_domain

        pipeline = as_pipeline(degrade)  # parsed once: the run stores its canonical spec
        if pipeline is not None:  # lengths given as angles (fwhm=0.8arcsec) in pixels of this data
            pipeline = pipeline.in_pixels(ds.pixel_scale, of=str(ds.path))
        options["degrade"] = pipeline.spec if pipeline is not None else None
        if pipeline is not None and pipeline.conversions:
            options["degrade_lengths"] = list(pipeline.conversions)  # each angle given and the pixels it became
        options["data_domain"] = data_domain(ds)  # what evaluation data are checked against
    options.update(seed=seed)
    if kind == "generator":
        options["steps"] = steps
    options.update(extra or {})
    options["command"] = current_command()
    return TrainingPlan(kind, cls, config, ds, options, pipeline=pipeline)


def baseline_names(cls: type, value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """The baselines of task ``cls`` that ``value`` names: ``"a,b"``, ``"all"``, ``"none"`` or names.

    None stays None (the task's own default). Raises
    :class:`galaug.errors.ParamError` naming ``baselines`` for a name the
    task does not report (see :attr:`galaug.kinds.Task.baselines`).
    """
    from galaug.errors import ParamError

    if value is None:
        return None
    known = tuple(getattr(cls, "baselines", ()) or ())
    if isinstance(value, str):
        text = value.strip().lower()
        value = () if text in ("", "none") else known if text == "all" else [v.strip() for v in text.split(",")]
    names = tuple(dict.fromkeys(value))
    for name in names:
        if name not in known:
            raise ParamError("baselines", "{baselines}: task {task} has no baseline {name!r} ({known})",
                             task=cls.name, name=name,
                             known=f"it has {', '.join(known)}; or all, none" if known else "it reports none")
    return names


def evaluate_run(run: Run, data: str | Path, *, degrade: str | Pipeline | None = None,
                 out: str | Path | None = None, device: str = "cpu", seed: int = 0, overwrite: bool = False,
                 allow_domain_shift: bool = False, baselines: str | Sequence[str] | None = None,
                 manager=None) -> tuple[dict[str, Any], Path]:
    """Evaluate the task run ``run`` on ``data``; write the metrics file and return ``(metrics, path)``.

    ``degrade`` (a spec or a Pipeline) defaults to the run's own degradation.
    ``baselines`` (:func:`baseline_names`; checked before anything runs)
    chooses the task's classical baselines; None leaves the choice to the
    task, and a task without baselines is never passed any.
    The file (``out``, by default ``RUN/metrics-<data name>.json``) holds the
    task, run, data and its id, the seed, the canonical degradation, the
    domain check and the task's metrics; it is written atomically.

    Data in another flux unit than the run's training data, or on a flux
    scale more than 10x apart (:mod:`galaug.domain`), are refused with a
    :class:`galaug.domain.DomainError` unless ``allow_domain_shift``.
    """
    from galaug.data import open_dataset
    from galaug.data.writer import check_output
    from galaug.degrade import as_pipeline
    from galaug.files import atomic_write_text

    if run.kind != "task":
        raise GalaugError(f"{run.path}: not a task run (it is a {run.kind} run)")
    cls = run.component(manager)
    chosen = baseline_names(cls, baselines)
    ds = open_dataset(data)
    pipeline = as_pipeline(degrade) if degrade else run.pipeline
    if pipeline is not None:  # lengths given as angles in pixels of this data (the run's own are in pixels)
        pipeline = pipeline.in_pixels(ds.pixel_scale, of=str(ds.path))
    path = Path(out) if out else run.path / f"metrics-{ds.path.name.removesuffix('.zarr')}.json"
    check_output(path, overwrite=overwrite, what="file")
    from galaug.domain import require_same_domain

    domain = require_same_domain(run.options.get("data_domain"), ds, allow_domain_shift=allow_domain_shift,
                                 what=f"run {run.path.name}")
    extra = {"baselines": chosen} if chosen is not None and getattr(cls, "baselines", ()) else {}
    metrics = cls(run.config(cls)).evaluate(run.path, ds.path, degrade=pipeline, device=device, seed=seed, **extra)
    report = {"task": run.name, "run": str(run.path), "data": str(ds.path), "data_id": ds.id, "seed": seed,
              "degrade": pipeline.spec if pipeline is not None else None, "domain": domain, "metrics": metrics}
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    return metrics, path


# -- the scaffolding of a training loop -------------------------------------------------------

def rank_rows(start: int, stop: int) -> tuple[int, int]:
    """This rank's contiguous part ``[a, b)`` of the global batch of rows ``[start, stop)``.

    Rank ``r`` of ``R`` reads ``[start + r n // R, start + (r + 1) n // R)``
    with ``n = stop - start``; with one process, the whole batch.
    """
    lo, hi = distributed.shard_range(stop - start)
    return start + lo, start + hi


class Training:
    """What every training loop needs besides its model and its step.

    Parameters
    ----------
    run_dir : Path
        The run directory (``options.json`` already written).
    store : CheckpointStore
        Where checkpoints go (the plugin's format tag).
    counter : str
        ``"step"`` or ``"epoch"``: the key of ``metrics.jsonl`` lines and the
        number in checkpoint files.
    total : int
        The last step (or epoch) of the run.
    resume : bool
        Continue from the newest good checkpoint, if there is one.
    desc, unit : str
        Progress bar label and unit.

    Typical use inside a plugin's ``train``::

        t = Training(run_dir, store=store, counter="step", total=steps, resume=resume, desc="train mygen")
        state = t.resume_state()           # None for a new run (torch seeded with seed first)
        model = build(...)                 # draws its init from the torch RNG
        if state: model.load_state_dict(state["model"]); t.restore_rng(state)
        for step in range(t.start, steps):
            ...
            t.log(step=step + 1, loss=...)             # rank 0 only
            if t.due(step + 1, every=cfg.checkpoint_every):
                t.save({"model": model.state_dict()}, number=step + 1, keep=3)
        t.close()
    """

    def __init__(self, run_dir: str | Path, *, store: CheckpointStore, counter: str = "step", total: int,
                 resume: bool = False, desc: str = "train", unit: str = "step", seed: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.store, self.counter, self.total, self.resume = store, counter, total, resume
        self.main = distributed.is_main()
        self.start = 0
        self._desc, self._unit = desc, unit
        self._seed = seed
        self._log = None
        self._bar = None

    # -- resume ---------------------------------------------------------------------
    def resume_state(self) -> dict[str, Any] | None:
        """The newest good checkpoint when resuming (sets :attr:`start`), else None after seeding torch with ``seed``.

        On resume, rank 0 drops the ``metrics.jsonl`` lines logged after the
        checkpoint (they will be logged again). A run stopped before its
        first checkpoint starts again from scratch.
        """
        import torch

        state = None
        if self.resume and self.store.list():
            state = self.store.load()
            self.start = int(state[self.counter])
        elif self._seed is not None:
            torch.manual_seed(self._seed)
        path = self.run_dir / METRICS
        if self.resume and self.main and path.exists():
            trim_metrics(path, self.counter, self.start)
        return state

    @staticmethod
    def rng_state() -> dict[str, Any]:
        """The RNG states a checkpoint saves (torch CPU; CUDA where it is in use)."""
        import torch

        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def restore_rng(state: Mapping[str, Any]) -> None:
        """Restore :meth:`rng_state` from a checkpoint; call it after building the model (its init draws)."""
        import torch

        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            with contextlib.suppress(RuntimeError, ValueError):
                torch.cuda.set_rng_state_all(rng["cuda"])

    @staticmethod
    def optimizer_to(optimizer, device) -> None:
        """Move an optimizer's state tensors (restored on the CPU from a checkpoint) to ``device``."""
        import torch

        for per_param in optimizer.state.values():
            for key, value in per_param.items():
                if isinstance(value, torch.Tensor) and key != "step":
                    per_param[key] = value.to(device)

    # -- during the run -------------------------------------------------------------
    def due(self, done: int, *, every: int) -> bool:
        """True at every ``every``-th step (or epoch) and at the last one."""
        return done % every == 0 or done == self.total

    def log(self, **record: Any) -> None:
        """Append one line to ``metrics.jsonl`` (rank 0; the others do nothing)."""
        if not self.main:
            return
        if self._log is None:
            self._log = open(self.run_dir / METRICS, "a")  # noqa: SIM115 (closed by close())
        self._log.write(json.dumps(record) + "\n")
        self._log.flush()

    def save(self, state: Mapping[str, Any], *, number: int, keep: int) -> Path | None:
        """Checkpoint ``state`` plus the counter and the RNG states as ``ckpt-<number>.pt`` (rank 0)."""
        if not self.main:
            return None
        return self.store.save({self.counter: number, **state, "rng": self.rng_state()}, number=number, keep=keep)

    def save_named(self, name: str, state: Mapping[str, Any], *, number: int) -> Path | None:
        """Write a named file such as ``best.pt`` (rank 0)."""
        if not self.main:
            return None
        return self.store.save_named(name, {self.counter: number, **state})

    @property
    def bar(self):
        """A progress bar over the whole run, already advanced to :attr:`start` (rank 0, terminals only)."""
        if self._bar is None:
            from galaug.progress import progress

            self._bar = progress(total=self.total, desc=self._desc, unit=self._unit)
            self._bar.update(self.start)
        return self._bar

    def close(self) -> None:
        """Close the metrics file and the progress bar."""
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Training:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_image_data(ds: Dataset, *, image_size: int, batch_size: int, plugin: str) -> None:
    """Refuse training data an image generator cannot take, in one line each.

    Square images of ``image_size`` pixels (the config's; the hint says how
    to change it), at least one batch of them, and a global batch that
    splits over the processes of the job. ``plugin`` names the config in the
    message ("the ALAE config").
    """
    _, h, w = ds.image_shape
    if h != w or h != image_size:
        raise GalaugError(f"{ds.path}: images are {h}x{w} but {plugin} has image_size {image_size} "
                          f"(--set image_size={h} if {h} is a power of two from 16 to 256)")
    if len(ds) < batch_size:
        raise GalaugError(f"{ds.path}: {len(ds)} images, fewer than one batch of {batch_size}")
    world = distributed.world_size()
    if batch_size % world:
        raise GalaugError(f"batch_size {batch_size} does not split over {world} processes "
                          f"(--set batch_size=... a multiple of {world})")


def layout_record(ds: Dataset) -> dict[str, Any]:
    """What a generator's checkpoint keeps of its training data's layout (bands, size, pixel scale, flux unit).

    :func:`galaug.data.pixel_scale_quantity` turns the stored pixel scale back
    into a Quantity for :class:`galaug.kinds.Layout`.
    """
    return {"bands": list(ds.bands), "image_size": ds.image_shape[1], "pixel_scale": ds.meta.get("pixel_scale"),
            "flux_unit": ds.flux_unit}

