"""``galaug task train`` and ``galaug task eval``: any task plugin, same commands."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import click

from galaug.cli.options import config_options, echo, nproc_option, overwrite_option, seed_option
from galaug.distributed import is_main, on_main
from galaug.errors import GalaugError

__all__ = ["task_group"]

_device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                              show_default=True, help="Where to run; auto picks cuda when available.")


@click.group("task")
def task_group() -> None:
    """Train and evaluate downstream tasks (denoise, ...) on any dataset or mix."""


def _check_spec(spec: str | None) -> None:
    if spec:
        from galaug.degrade import parse_pipeline

        parse_pipeline(spec)  # a spec that does not parse is an error before anything is written


@task_group.command("train")
@click.argument("name")
@click.argument("data")
@click.option("--degrade", "degrade", default=None, metavar="SPEC",
              help='Degradation pipeline applied on the fly, e.g. "psf:gaussian(sigma=2)|noise:gaussian(std=4)".')
@click.option("--run-dir", default="runs", show_default=True, help="Folder that receives the numbered run directory.")
@click.option("--resume", default=None, metavar="RUN", help="Continue this run from its newest good checkpoint.")
@click.option("--dry-run", is_flag=True, help="Print the resolved options and exit without training.")
@_device_option
@config_options
@seed_option
@nproc_option
def task_train_cmd(name: str, data: str, degrade: str | None, run_dir: str, resume: str | None, dry_run: bool,
                   device: str, config_file: str | None, sets: tuple[str, ...], seed: int) -> None:
    """Train task NAME on dataset DATA (a real set or a mix), degrading inputs on the fly."""
    from galaug.config import config_to_dict, resolve_config
    from galaug.data import open_dataset
    from galaug.data.provenance import current_command
    from galaug.generators import _device, read_options
    from galaug.registry import component_version

    manager = click.get_current_context().find_root().obj
    cls = manager.get("task", name)
    ds = open_dataset(data)
    if resume:
        options = read_options(resume, kind="task")
        if options["task"] != name:
            raise GalaugError(f"{resume}: is a {options['task']!r} run, not {name!r}")
        if options.get("data_id") != ds.id:
            raise GalaugError(f"{resume}: was trained on {options.get('data')}, not on {data}")
        if config_file or sets or degrade:
            raise GalaugError("--resume continues a run with its own config; drop --config/--set/--degrade")
        config = resolve_config(cls.Config, overrides=options["config"])
        degrade, seed = options.get("degrade"), options["seed"]
    else:
        _check_spec(degrade)
        config = resolve_config(cls.Config, file=config_file, sets=sets)
        options = {"task": name, "plugin_version": component_version(cls), "config": config_to_dict(config),
                   "data": str(Path(data).resolve()), "data_id": ds.id, "degrade": degrade, "seed": seed,
                   "command": current_command()}
    if dry_run:
        click.echo(json.dumps({**options, "device": _device(device)}, indent=2))
        return
    if resume:
        run = Path(resume)
    else:
        from galaug.cli.generator import _new_run

        run = on_main(_new_run, run_dir, name, data, options)
    echo(f"run directory: {run}")
    try:
        cls(config).train(ds.path, run, degrade=degrade, device=_device(device), seed=seed, resume=bool(resume))
    except GalaugError:
        if is_main() and not resume and not any(p.suffix == ".pt" for p in run.rglob("*")):
            shutil.rmtree(run, ignore_errors=True)
        raise
    echo(f"done: {run}")


@task_group.command("eval")
@click.argument("name")
@click.argument("run")
@click.argument("data")
@click.option("--degrade", "degrade", default=None, metavar="SPEC",
              help="Evaluation degradation [default: the one the run was trained with].")
@click.option("-o", "--output", default=None, help="Where to write the metrics [default: RUN/metrics-DATA.json].")
@_device_option
@seed_option
@overwrite_option
def task_eval_cmd(name: str, run: str, data: str, degrade: str | None, output: str | None, device: str, seed: int,
                  overwrite: bool) -> None:
    """Evaluate the run RUN of task NAME on dataset DATA; write metrics.json and print a summary."""
    from galaug.data import open_dataset
    from galaug.data.writer import check_output
    from galaug.generators import _device, read_options

    manager = click.get_current_context().find_root().obj
    cls = manager.get("task", name)
    options = read_options(run, kind="task")
    if options["task"] != name:
        raise GalaugError(f"{run}: is a {options['task']!r} run, not {name!r}")
    ds = open_dataset(data)
    _check_spec(degrade)
    out = Path(output) if output else Path(run) / f"metrics-{ds.path.name.removesuffix('.zarr')}.json"
    check_output(out, overwrite=overwrite, what="file")
    config = cls.Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in options["config"].items()}) \
        if options.get("config") else cls.Config()
    metrics = cls(config).evaluate(Path(run), ds.path, degrade=degrade, device=_device(device), seed=seed)
    report = {"task": name, "run": str(run), "data": str(ds.path), "data_id": ds.id, "seed": seed,
              "degrade": degrade or options.get("degrade"), "metrics": metrics}
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)
    click.echo(json.dumps(metrics.get("summary", metrics), indent=2))
    click.echo(f"wrote {out}")
