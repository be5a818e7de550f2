"""The ratio experiment: train a task on several mixes of real and generated data, K seeds each.

``galaug experiment ratios CONFIG.toml`` (see docs/experiment.md)::

    task = "denoise"
    real = "real-train.zarr"                   # the real training set
    val = "real-val.zarr"                      # the independent validation set
    gen = "gen.zarr"                           # generated images (or generator = "runs/00000-alae-...")
    # generators = {alae = "gen-alae.zarr", diffusion = "runs/00001-diffusion-..."}   # instead: several
    oracle = false                             # true: arms with fresh draws of the real set's simulator
    degrade = "psf:gaussian(sigma=2)|noise:gaussian(std=4)"
    seeds = [0, 1, 2]
    out = "runs/experiment"
    metric = "mse"                             # the summary metric of the table and figure
    allow_outliers = false                     # true: use generated images that fail the quality gate
    assume_same_scale = false                  # true: mix sets when only one has a pixel scale
    allow_domain_shift = false                 # true: a val set in other units than real is evaluated anyway
    baselines = "default"                      # the task's classical baselines: default, none, all or "tv,wiener"
    [task_config]                              # the task's --set values
    epochs = 5

Arms default to the study's four (100% real; 10% real; 5x generated only;
5x generated + 100% real) plus 10% real + 5x generated and an alpha sweep;
``[[arms]]`` tables (``name``, ``real``, ``gen`` or ``alpha``) replace them.
An arm with generated images runs once per generator (``generators``, or the
one of ``gen``/``generator``), and once more with the oracle
(:mod:`galaug.oracle`) when ``oracle = true``.
Each arm and seed is a mix (``galaug mix``), a training run and an
evaluation; finished (arm, seed) pairs are skipped when the command is run
again, so an interrupted experiment resumes. The results open with a
summary in words and, with the oracle, give each generator's usefulness
(:mod:`galaug.experiment_summary`).
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
    #: rows drawn as the first of a permutation fixed by the seed, so that with one seed a smaller arm's images are
    #: part of a larger one's (the size sweep's learning curve)
    nested: bool = False

    @property
    def slug(self) -> str:
        return _slug(self.name)


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
    #: the task's classical baselines scored in every evaluation: "default" (the task's choice), "none", "all" or
    #: names ("tv,wiener"); a row each in the results, over every run
    baselines: str = "default"
    #: several generators by name, each a generated set or a generator run folder (instead of gen or generator)
    generators: dict[str, str] = dataclasses.field(default_factory=dict)
    #: add arms whose generated images are fresh draws of the real set's simulator (galaug.oracle)
    oracle: bool = False
    #: the oracle's simulation seed (default: one more than the real and val sets' simulation seeds)
    oracle_seed: int | None = None
    #: "all": the generators as given (trained on every real image, so arms with part of the real set see the rest
    #: through them); "arm": each arm's generator trained afresh on that arm's real images only (no leak; generators
    #: must be run folders, each a recipe); "both": the rows of both (galaug.experiment_generators)
    generator_training: str = "all"
    #: steps of each arm's own generator with generator_training "arm" or "both" (default: the recipe run's)
    generator_steps: int | None = None
    #: the real-set sizes of the size sweep (galaug experiment sizes): counts, or "all"
    sizes: Any = None
    #: generated images per real image in the size sweep's generated arms
    size_gen: str = "5x"


def load_experiment(path: str | Path, *, oracle: bool = False) -> tuple[ExperimentConfig, tuple[Arm, ...],
                                                                         dict[str, Any]]:
    """Read and check an experiment file: (config, arms, task config overrides); ``oracle`` sets ``oracle = true``."""
    path = Path(path)
    data = read_toml(path, what="experiment file")
    if oracle:
        data["oracle"] = True
    arms_data = data.pop("arms", None)
    task_config = data.pop("task_config", {})
    generators = data.pop("generators", None)
    config = resolve_config(ExperimentConfig, overrides=data)
    base = path.parent
    config.generators = _read_generators(path, generators)
    for key in ("real", "val", "gen", "generator", "out"):  # paths relative to the file
        value = getattr(config, key)
        if value and not Path(value).is_absolute():
            setattr(config, key, str(base / value))
    for key in ("task", "real", "val"):
        if not getattr(config, key):
            raise ConfigError(f"experiment file {path}: {key!r} is required")
    if config.gen and config.generator:
        raise ConfigError(f"experiment file {path}: give gen or generator, not both")
    if config.generators and (config.gen or config.generator):
        raise ConfigError(f"experiment file {path}: give generators or {'gen' if config.gen else 'generator'}, "
                          "not both (a single generator is one entry of generators)")
    if not config.seeds:
        raise ConfigError(f"experiment file {path}: seeds must not be empty")
    _check_generator_training(path, config)
    from galaug.experiment_sizes import check_sizes

    config.sizes = check_sizes(f"experiment file {path}", config.sizes, config.size_gen)
    arms = DEFAULT_ARMS
    if arms_data is not None:
        if not isinstance(arms_data, list) or not arms_data:
            raise ConfigError(f"experiment file {path}: [[arms]] must be a non-empty list of tables")
        arms = tuple(resolve_config(Arm, overrides={"real": None, **_shares_as_text(a)})
                     if isinstance(a, dict) and "name" in a else _bad_arm(path, a) for a in arms_data)
        for arm in arms:  # a share that does not parse (a bare "1") is an error before any work
            _check_shares(path, arm, on_the_fly=bool(config.generator) or any(s.run for s in _sources(config)))
    if not (config.gen or config.generator or config.generators or config.oracle) and any(
            a.gen or a.alpha is not None for a in arms):
        raise ConfigError(f"experiment file {path}: arms use generated images but neither gen nor generator is set "
                          "(nor generators, nor oracle = true)")
    if len({a.slug for a in arms}) != len(arms):
        raise ConfigError(f"experiment file {path}: arm names must be distinct")
    _check_rows(path, config, arms)
    return config, arms, task_config


def _read_generators(path: Path, value: Any) -> dict[str, str]:
    """The experiment file's ``generators`` table, paths relative to the file; each generator once."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"experiment file {path}: generators must be a table of name = path, "
                          'e.g. {alae = "gen-alae.zarr", diffusion = "runs/00001-diffusion-train"}')
    out: dict[str, str] = {}
    seen: dict[Path, str] = {}
    for name, where in value.items():
        if not isinstance(where, str) or not where.strip():
            raise ConfigError(f"experiment file {path}: generators.{name} must be the path of a generated set or of "
                              f"a generator run folder, got {where!r}")
        if name == "oracle":
            raise ConfigError(f"experiment file {path}: generators: 'oracle' names the oracle's arms (oracle = true); "
                              "give this generator another name")
        if not _slug(name):
            raise ConfigError(f"experiment file {path}: generators: the name {name!r} needs a letter or a digit")
        full = where if Path(where).is_absolute() else str(path.parent / where)
        key = Path(full).resolve()
        if key in seen:
            raise ConfigError(f"experiment file {path}: generators {seen[key]} and {name} are both {where} "
                              "(a generator listed twice)")
        seen[key] = name
        out[name] = full
    return out


def _check_generator_training(path: Path, config: ExperimentConfig) -> None:
    """``generator_training`` names a mode; per-arm training needs generator run folders (recipes)."""
    from galaug.experiment_generators import MODES

    mode = config.generator_training
    if mode not in MODES:
        raise ConfigError(f"experiment file {path}: generator_training must be one of {', '.join(MODES)}, "
                          f"got {mode!r}")
    if config.generator_steps is not None and config.generator_steps < 1:
        raise ConfigError(f"experiment file {path}: generator_steps must be at least 1, got {config.generator_steps}")
    if mode == "all":
        return
    sources = _given_sources(config)
    if not sources:
        raise ConfigError(f"experiment file {path}: generator_training = {mode!r} retrains generators per arm, but "
                          "no generator is given (generators = {alae = \"runs/00000-alae-train\"})")
    for source in sources:
        if not source.run:
            raise ConfigError(f"experiment file {path}: generator_training = {mode!r} retrains each generator on "
                              f"each arm's real images, so {source.name} must be a generator run folder (its recipe), "
                              f"not the generated set {source.path}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclasses.dataclass(frozen=True)
class _Source:
    """Where an arm's generated images come from: a generated set, or a generator ``run`` folder (on the fly)."""

    name: str
    path: str
    run: bool = False
    #: trained afresh on each arm's real images (generator_training "arm"): ``path`` is the recipe run
    per_arm: bool = False


#: What marks the rows of a generator retrained on each arm's real images (generator_training "arm").
NO_LEAK = "no-leak"


def _sources(config: ExperimentConfig) -> list[_Source]:
    """The experiment's generators, the oracle aside, as the table's rows use them: ``generators``, or the one of
    ``gen`` or ``generator``; with generator_training "arm" each retrained per arm (``NAME no-leak``), with
    "both" as given and retrained."""
    given = _given_sources(config)
    mode = config.generator_training
    per_arm = [dataclasses.replace(s, name=f"{s.name} {NO_LEAK}", per_arm=True) for s in given]
    return given if mode == "all" else per_arm if mode == "arm" else given + per_arm


def _given_sources(config: ExperimentConfig) -> list[_Source]:
    if config.generators:
        return [_Source(name, path, run=(Path(path) / "options.json").is_file())
                for name, path in config.generators.items()]
    if config.gen:
        return [_Source(Path(config.gen).name.removesuffix(".zarr") or "gen", config.gen)]
    if config.generator:
        return [_Source(Path(config.generator).name or "generator", config.generator, run=True)]
    return []


def _rows(arms: tuple[Arm, ...], generators: list[str], oracle: bool) -> list[tuple[Arm, str | None, str, str]]:
    """``(arm, generator, label, file tag)`` of every row of the table, in its order.

    An arm with generated images runs once per generator, then with the
    oracle. With one generator its rows keep the arm's name; with several,
    and for the oracle, the label names the generator: ``5x gen [alae]``.
    The file tag of ``OUT/results/<tag>-s<seed>.json`` is the arm's slug,
    then ``--`` and the generator's (an arm's slug never holds ``--``).
    """
    out = []
    for arm in arms:
        if not (arm.gen or arm.alpha is not None):
            out.append((arm, None, arm.name, arm.slug))
            continue
        for g in [*generators, *(["oracle"] if oracle else [])]:
            plain = len(generators) == 1 and g != "oracle" and not g.endswith(NO_LEAK)
            out.append((arm, g, arm.name if plain else f"{arm.name} [{g}]",
                        arm.slug if plain else f"{arm.slug}--{_slug(g)}"))
    return out


def _check_rows(path: Path, config: ExperimentConfig, arms: tuple[Arm, ...]) -> None:
    """Distinct table rows and result files; oracle arms need generated shares that do not depend on a set."""
    names = [s.name for s in _sources(config)]
    if len({_slug(n) for n in names}) != len(names):
        raise ConfigError(f"experiment file {path}: generator names must be distinct as file names "
                          f"({', '.join(names)})")
    rows = _rows(arms, names, config.oracle)
    for i in (2, 3):
        values = [r[i] for r in rows]
        clash = next((v for v in values if values.count(v) > 1), None)
        if clash is not None:
            raise ConfigError(f"experiment file {path}: two rows of the table would both be {clash!r}: rename an arm")
    if config.oracle:
        from galaug.mix import parse_gen_share

        for arm in arms:
            if arm.gen and parse_gen_share(arm.gen).kind == "fraction":
                raise ConfigError(f"experiment file {path}: arm {arm.name!r}: gen {arm.gen} is a fraction of each "
                                  "generator's set, so its oracle arm has no count to draw; with oracle = true give "
                                  "a multiple (5x) or a count")


def _bad_arm(path: Path, arm: Any):
    raise ConfigError(f"experiment file {path}: every [[arms]] table needs a name, got {arm!r}")


def _shares_as_text(arm: dict[str, Any]) -> dict[str, Any]:
    """An arm's table with a number as ``real`` or ``gen`` written as text (``1.0``: ``"1.0"``), as the CLI reads it."""
    return {k: str(v) if k in ("real", "gen") and isinstance(v, (int, float)) and not isinstance(v, bool) else v
            for k, v in arm.items()}


def _check_shares(path: Path, arm: Arm, *, on_the_fly: bool) -> None:
    """Parse the shares of ``arm`` (the grammar of galaug.ratios); an error names the arm and its key."""
    from galaug.errors import ParamError
    from galaug.mix import parse_gen_share
    from galaug.ratios import parse_alpha, parse_share

    try:
        if arm.real is not None:
            parse_share(arm.real, param="real")
        if arm.gen:
            parse_gen_share(arm.gen, on_the_fly=on_the_fly)
        if arm.alpha is not None:
            parse_alpha(arm.alpha)
    except ParamError as exc:
        spelling = {"gen_data": "the gen set", "generator": "generator"}
        raise ConfigError(f"experiment file {path}: arm {arm.name!r}: "
                          + exc.spelled(lambda name: spelling.get(name, name))) from None


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
    baselines = _baselines(cls, config.baselines)
    pipeline = as_pipeline(config.degrade)  # parsed once, for every arm's training and evaluation
    real, val = open_dataset(config.real), open_dataset(config.val)
    task_config, steps_note = equal_steps(cls, task_config, len(real))
    if pipeline is not None:  # lengths given as angles (fwhm=0.8arcsec) in pixels of the real data
        pipeline = pipeline.in_pixels(real.pixel_scale, of=str(real.path))
    with _spelled_for_the_file():  # a validation set in other units than the training data: before any work
        from galaug.domain import data_domain, require_same_domain

        require_same_domain(data_domain(real), val, allow_domain_shift=config.allow_domain_shift,
                            what=f"the real set {Path(config.real).name}")
    sources = _sources(config)
    for source in sources:  # a generated set that failed the quality gate, or does not fit, stops it before any work
        _check_source(source, real, config)
    oracle, no_oracle = None, None
    if config.oracle:  # a real set that has no oracle stops it before any work (ParamError naming oracle)
        from galaug.oracle import oracle_plan

        oracle = oracle_plan(real, avoid=[val], seed=config.oracle_seed, manager=manager)
    else:
        from galaug.oracle import no_oracle_reason

        reason = no_oracle_reason(real, manager=manager)
        no_oracle = (f"No oracle, so no usefulness: {reason}." if reason else
                     "No oracle arms, so no usefulness: the real set was simulated, and oracle = true adds arms "
                     "whose generated images are fresh draws of its simulator.")
    out = Path(config.out)
    if overwrite:  # nothing is deleted for an experiment that would fail its checks
        _start_afresh(out, inputs=[*inputs, config.real, config.val, *(s.path for s in sources)])
    for sub in ("mixes", "runs", "results"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    by_name = {s.name: s for s in sources}
    oracle_info = None
    if oracle is not None and any(a.gen or a.alpha is not None for a in arms):
        from galaug.oracle import draw_oracle

        n_oracle = _oracle_count(arms, len(real))
        drawn = draw_oracle(oracle, out / "oracle.zarr", n_oracle, manager=manager, echo=echo)
        by_name["oracle"] = _Source("oracle", str(drawn.path))
        oracle_info = {**oracle.describe(), "path": str(drawn.path), "n": len(drawn)}
    rows = _rows(arms, [s.name for s in sources], oracle is not None)
    total = len(rows) * len(config.seeds)
    done = 0
    for arm, generator, label, arm_tag in rows:
        for seed in config.seeds:
            done += 1
            tag = f"{arm_tag}-s{seed}"
            result = out / "results" / f"{tag}.json"
            if result.exists():
                echo(f"[{done}/{total}] {label}, seed {seed}: done before, skipped")
                continue
            echo(f"[{done}/{total}] {label}, seed {seed}")
            source = by_name.get(generator) if generator else None
            trained = None
            if source is not None and source.per_arm:  # no leak: the arm's own generator, cached per (subset, seed)
                from galaug.experiment_generators import arm_generator, arm_rows

                trained = arm_generator(source.path, real=real, rows=arm_rows(arm, len(real), seed), seed=seed,
                                        out=out / "generators", steps=config.generator_steps, manager=manager,
                                        device=config.device, echo=echo)
                source = _Source(source.name, str(trained.path), run=True)
            with _spelled_for_the_file():
                mix = _mix(arm, out / "mixes" / f"{tag}.zarr", config, real, seed, source=source)
            run_path = out / "runs" / tag
            if run_path.exists():  # an interrupted training of this pair: start it again
                shutil.rmtree(run_path)
            plan = plan_training("task", config.task, mix.path, manager=manager, overrides=task_config, seed=seed,
                                 degrade=pipeline, extra={"arm": arm.name, **({"generated_by": generator}
                                                                              if generator else {})})
            run = plan.run(plan.start(path=run_path), device=config.device)
            # val was checked against the real set before any work; an arm whose mix is on another scale
            # (a faint generator) is measured, its shift recorded in its metrics, rather than stopping the rest
            metrics, _ = evaluate_run(run, val.path, degrade=pipeline, device=config.device, seed=0,
                                      allow_domain_shift=True, baselines=baselines, manager=manager)
            counts = mix.origin_counts()
            atomic_write_text(result, json.dumps({"arm": dataclasses.asdict(arm), "generator": generator,
                                                  "source": None if source is None else source.path,
                                                  "generator_training": None if generator in (None, "oracle") else
                                                  ("arm" if trained is not None else "all"),
                                                  **({"generator_data_id": trained.data_id} if trained else {}),
                                                  "seed": seed, "n_real": counts["real"],
                                                  "n_generated": counts["generated"], **training_steps(run),
                                                  "metrics": metrics}, indent=2))
    summarise(out, arms, config.seeds, metric=config.metric, generators={s.name: s.path for s in sources},
              oracle=oracle_info, no_oracle=no_oracle, steps_note=steps_note)
    return out


def equal_steps(cls: type, task_config: dict[str, Any], n_real: int) -> tuple[dict[str, Any], str]:
    """The task config every arm trains with, so that every arm makes the same number of gradient steps.

    A task whose config has ``steps_per_epoch`` (a fixed number of batches
    per epoch, whatever the set's size) gets, unless the file sets it, the
    batches of one pass over the whole real set (at most
    ``max_steps_per_epoch`` when that is set, which it replaces): 10% real
    and 5x generated then train as long as 100% real, and only early
    stopping ends an arm sooner. A task without it trains by epochs, and
    the note (for the results) says that arms of more images make more steps.
    Returns (task config, note).
    """
    from galaug.config import resolve_config

    fields = {f.name for f in dataclasses.fields(cls.Config)}
    if "steps_per_epoch" not in fields:
        return task_config, (f"task {cls.name} trains by epochs, so arms with more images made more gradient "
                             "steps than the others")
    config = dict(task_config)
    if not config.get("steps_per_epoch"):
        resolved = resolve_config(cls.Config, overrides=task_config)
        batch = int(getattr(resolved, "batch_size", 1) or 1)
        per_epoch = max(1, math.ceil(n_real / batch))
        cap = int(config.pop("max_steps_per_epoch", 0) or 0)
        config["steps_per_epoch"] = min(per_epoch, cap) if cap else per_epoch
    resolved = resolve_config(cls.Config, overrides=config)
    epochs = getattr(resolved, "epochs", None)
    total = f"{epochs} epochs x {resolved.steps_per_epoch} = {epochs * resolved.steps_per_epoch} gradient steps" \
        if epochs else f"{resolved.steps_per_epoch} gradient steps per epoch"
    return config, f"every arm: {total}, unless early stopping ended it sooner"


def training_steps(run) -> dict[str, Any]:
    """``steps`` (gradient steps, summed over the run's log) and ``stopped_early`` of a task run, where it logs
    them (the denoiser logs ``steps`` and ``stopped`` every epoch)."""
    log = run.metrics()
    steps = [r["steps"] for r in log if isinstance(r.get("steps"), int)]
    if not steps:
        return {}
    return {"steps": int(sum(steps)), "stopped_early": any(bool(r.get("stopped")) for r in log)}


def _check_source(source: _Source, real, config: ExperimentConfig) -> None:
    """A generated set must pass the quality gate and fit the real set; a run folder must be a generator's run."""
    from galaug.data import open_dataset
    from galaug.mix import _check_compatible

    if source.run:
        from galaug.runs import Run

        Run.open(source.path, kind="generator")
        return
    gen = open_dataset(source.path)
    with _spelled_for_the_file():
        require_passed(gen, allow_outliers=config.allow_outliers)
        _check_compatible(real, gen.bands, gen.image_shape, gen.pixel_scale, source.path,
                          assume_same_scale=config.assume_same_scale)


def _oracle_count(arms: tuple[Arm, ...], n_real: int) -> int:
    """How many oracle images the arms need at most: their generated share, or the whole real set for alpha."""
    from galaug.mix import parse_gen_share

    counts = [n_real if arm.alpha is not None else parse_gen_share(arm.gen).of(n_real)
              for arm in arms if arm.gen or arm.alpha is not None]
    return max(counts, default=0) or 1


#: What an experiment writes into its output folder.
_OWN = frozenset({"mixes", "runs", "results", "results.csv", "results.json", "results.md", "results.png",
                  "oracle.zarr", "generators", "sizes", "curve.png", "curve.md", "curve.json"})


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


def _baselines(cls: type, value: str) -> tuple[str, ...] | None:
    """The experiment file's ``baselines`` for task ``cls`` (None: the task's default), checked before any work."""
    from galaug.errors import ParamError
    from galaug.runs import baseline_names

    try:
        return None if value.strip().lower() == "default" else baseline_names(cls, value)
    except ParamError as exc:
        raise ConfigError(exc.spelled(lambda name: f"{name} in the experiment file")) from None


def _mix(arm: Arm, path: Path, config: ExperimentConfig, real, seed: int, *, source: _Source | None = None):
    """The training set of one (arm, seed): a mix of the real set and generated images of ``source``."""
    from galaug.mix import mix_datasets

    on_the_fly = source is not None and source.run
    gen_kw = {"gen_data": None if source is None or on_the_fly else source.path,
              "generator": source.path if on_the_fly else None,
              "allow_outliers": config.allow_outliers, "assume_same_scale": config.assume_same_scale}
    if arm.alpha is not None:
        return mix_datasets(path, real_data=real.path, alpha=arm.alpha, size=len(real), seed=seed, overwrite=True,
                            **gen_kw)
    if arm.gen:
        return mix_datasets(path, real_data=real.path, real=arm.real, gen=arm.gen, seed=seed, overwrite=True,
                            nested=arm.nested, **gen_kw)
    return mix_datasets(path, real_data=real.path, real=arm.real, seed=seed, overwrite=True, nested=arm.nested)


def summarise(out: Path, arms: tuple[Arm, ...], seeds, *, metric: str, generators: dict[str, str] | None = None,
              oracle: dict[str, Any] | None = None, no_oracle: str | None = None,
              steps_note: str | None = None) -> dict[str, Any]:
    """Write results.csv, results.json, results.md and results.png from the per-run results.

    ``generators`` (``{name: path}``; one unnamed generator by default) and
    ``oracle`` (what the oracle drew, or None) give the rows of the table,
    as the experiment ran them; ``no_oracle`` is the summary's sentence
    saying why there is no oracle. results.md opens with a summary in words
    (:func:`galaug.experiment_summary.summary_text`), then the table in one
    number format, then, with the oracle, each generator's usefulness.
    """
    from galaug.experiment_summary import summary_text, table_format, usefulness, usefulness_table

    generators = {"gen": ""} if generators is None else generators
    layout = _rows(arms, list(generators), oracle is not None)
    rows = []
    for arm, generator, label, tag in layout:
        for seed in seeds:
            path = out / "results" / f"{tag}-s{seed}.json"
            if not path.exists():
                continue
            r = json.loads(path.read_text())
            summary = r["metrics"].get("summary", r["metrics"])
            for test_set, values in summary.items():
                for name, value in _flatten(values if isinstance(values, dict) else {"value": values}).items():
                    rows.append({"arm": label, "generator": generator,
                                 "generator_training": r.get("generator_training"), "seed": seed,
                                 "n_real": r["n_real"], "n_generated": r["n_generated"], "steps": r.get("steps"),
                                 "stopped_early": r.get("stopped_early"), "test_set": test_set, "metric": name,
                                 "value": value})
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
    cells: list[dict[str, Any]] = []  # the results table of galaug.experiment_summary
    for arm, generator, label, _ in layout:
        for ts in test_sets:
            mine = [r for r in rows if r["arm"] == label and r["test_set"] == ts and r["metric"] == chosen]
            if mine:
                values = [r["value"] for r in mine]
                table.setdefault(label, {})[ts] = {"mean": float(np.mean(values)),
                                                   "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                                                   "n": len(values)}
                cells.append({"arm": label, "arm_name": arm.name, "generator": generator, "baseline": None,
                              "test_set": ts, **table[label][ts], "values": values,
                              "seeds": [r["seed"] for r in mine], "n_real": float(np.mean([r["n_real"] for r in mine])),
                              "n_generated": float(np.mean([r["n_generated"] for r in mine])),
                              "alpha": arm.alpha is not None})
    baselines = _baseline_table(rows, test_sets, chosen)
    cells += [{"arm": f"baseline: {name}", "arm_name": f"baseline: {name}", "generator": None, "baseline": name,
               "test_set": ts, **cell, "values": None, "seeds": None, "n_real": None, "n_generated": None,
               "alpha": False} for name, by_set in baselines.items() for ts, cell in by_set.items()]
    useful = usefulness(cells, metric=chosen) if oracle is not None else None
    summary = summary_text(cells, metric=chosen, oracle=no_oracle, usefulness_rows=useful)
    result = {"metric": chosen, "test_sets": test_sets, "table": table, "rows": rows, "steps": steps_note,
              **({"baselines": baselines} if baselines else {}), "cells": cells,
              "generators": generators, "oracle": oracle if oracle is not None else {"why": no_oracle},
              "usefulness": useful, "summary": summary}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    fmt = table_format([c["mean"] for c in cells], [c["std"] for c in cells])
    lines = ["| arm | " + " | ".join(test_sets) + " |", "|---" * (len(test_sets) + 1) + "|"]
    for label, by_set in {**table, **{f"baseline: {b}": c for b, c in baselines.items()}}.items():
        lines.append(f"| {label} | " + " | ".join(
            f"{fmt(by_set[ts]['mean'])} ± {fmt(by_set[ts]['std'])} (n={by_set[ts]['n']})" if ts in by_set else "-"
            for ts in test_sets) + " |")
    note = ("; baselines: the task's classical baselines, each tuned on a run's training set, over every run"
            if baselines else "")
    made = [f"{name} ({Path(where).name})" if where else name for name, where in generators.items()
            if any(c["generator"] == name for c in cells)]
    if made and (len(generators) > 1 or oracle is not None):
        note += f"; generated images: {', '.join(made)}"
    if oracle is not None:
        note += f"; [oracle]: fresh draws of the simulator {oracle['simulator']} (seed {oracle['seed']})"
    if any(str(g).endswith(NO_LEAK) for g in generators):
        note += (f"; [... {NO_LEAK}]: the generator's recipe trained afresh on each arm's own real images "
                 "(generator_training), the others trained on every real image")
    runs = {(r["arm"], r["seed"]): r for r in rows}.values()
    if steps_note:
        early = sum(bool(r["stopped_early"]) for r in runs)
        note += f"; {steps_note}" + (f" ({early} of {len(runs)} runs stopped early)" if early else "")
    text = (f"{summary}\n\n" if summary else "") + f"{chosen}, mean ± std over seeds{note}\n\n" + "\n".join(lines)
    if useful:
        text += ("\n\nUsefulness of each generated arm: (arm without generated images - arm) / (arm without "
                 f"generated images - its oracle arm), of the means of {chosen} over seeds; 1 as good as perfect data, "
                 "0 useless, below 0 harmful; ± the standard deviation of the per-seed values (a seed takes the same "
                 "real images in every arm), or the three arms' spreads propagated where seeds do not pair\n\n"
                 + usefulness_table(useful, test_sets))
    (out / "results.md").write_text(text + "\n")
    groups = {c["arm"]: ("baseline" if c["baseline"] else c["generator"] or "") for c in cells}
    _plot(out / "results.png", {**table, **{f"baseline: {b}": c for b, c in baselines.items()}}, test_sets,
          chosen, groups=groups, flux_unit=_flux_unit(out))
    return result


def _baseline_table(rows: list[dict[str, Any]], test_sets: list[str], metric: str) -> dict[str, dict[str, Any]]:
    """``{baseline: {test set: {mean, std, n}}}`` of ``metric`` over every run, from the summaries' ``baselines``
    (:attr:`galaug.kinds.Task.baselines`); empty when there are none or ``metric`` is not the model's own."""
    if metric.startswith(("input_", "baselines.")):
        return {}
    values: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        parts = r["metric"].split(".")
        if len(parts) == 3 and parts[0] == "baselines" and parts[2] == metric:
            values.setdefault(parts[1], {}).setdefault(r["test_set"], []).append(r["value"])
    return {name: {ts: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                        "n": len(v)} for ts in test_sets if (v := cells.get(ts))}
            for name, cells in values.items()}


def _flux_unit(out: Path) -> str | None:
    """The flux unit of the data evaluated (the ``domain`` of the experiment's first evaluation record), if known."""
    for path in sorted((out / "runs").glob("*/metrics-*.json")):
        try:
            return json.loads(path.read_text())["domain"]["domain"]["flux_unit"]  # galaug.domain's check record
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _plot(path: Path, table, test_sets, metric: str, *, groups: dict[str, str] | None = None,
          flux_unit: str | None = None) -> None:
    """Bars with error bars, a panel per test set; with several generators (or the oracle), a colour per generator
    (``groups``: row label to generator name, ``""`` for real images only, ``"baseline"``) and a legend.
    Every panel names its axes, the metric with its unit (``flux_unit``: the data's)."""
    from galaug.viz import axis_label, metric_unit, pyplot

    plt = pyplot()

    arms = list(table)
    groups = groups or {}
    kinds = list(dict.fromkeys(groups.get(a, "") for a in arms))
    by_generator = len([k for k in kinds if k not in ("", "baseline")]) > 1
    palette = {k: f"C{i}" for i, k in enumerate(kinds)}
    colours = ([palette[groups.get(a, "")] for a in arms] if by_generator else [f"C{i}" for i in range(len(arms))])
    fig, axes = plt.subplots(1, len(test_sets), figsize=(3.2 * len(test_sets), 3.4), squeeze=False)
    for ax, ts in zip(axes[0], test_sets):
        means = [table[a].get(ts, {}).get("mean", math.nan) for a in arms]
        stds = [table[a].get(ts, {}).get("std", 0.0) for a in arms]
        ax.bar(range(len(arms)), means, yerr=stds, capsize=3, color=colours)
        ax.set_xticks(range(len(arms)), arms, rotation=60, ha="right", fontsize=7)
        ax.set_title(ts, fontsize=9)
        ax.set_xlabel("arm", fontsize=8)
        ax.set_ylabel(axis_label(metric, metric_unit(metric, flux_unit)), fontsize=8)
    if by_generator:
        from matplotlib.patches import Patch

        axes[0][-1].legend(handles=[Patch(color=palette[k], label=k or "real only") for k in kinds], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
