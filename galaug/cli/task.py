"""``galaug task train`` and ``galaug task eval``: any task plugin, same commands."""

from __future__ import annotations

import json

import click

from galaug.cli.options import (config_options, deprecated_alias, device_option, nproc_option, option_names,
                                overwrite_option, run_options, seed_option, train_plan)

__all__ = ["task_group"]


@click.group("task")
def task_group() -> None:
    """Train and evaluate downstream tasks (denoise, ...) on any dataset or mix."""


@task_group.command("train")
@click.argument("name")
@click.argument("data")
@click.option("--degrade", "degrade", default=None, metavar="SPEC",
              help='Degradation pipeline applied on the fly, e.g. "psf:gaussian(sigma=2)|noise:gaussian(std=4)".')
@run_options
@device_option
@config_options
@seed_option(help="Seed of every random step of the training (recorded in options.json).")
@nproc_option
def task_train_cmd(name: str, data: str, degrade: str | None, run_dir: str, resume: str | None, dry_run: bool,
                   device: str, config_file: str | None, sets: tuple[str, ...], seed: int) -> None:
    """Train task NAME on dataset DATA (a real set or a mix), degrading inputs on the fly."""
    from galaug.runs import plan_training

    plan = plan_training("task", name, data, manager=click.get_current_context().find_root().obj, resume=resume,
                         config_file=config_file, sets=sets, seed=seed, degrade=degrade)
    train_plan(plan, run_dir=run_dir, device=device, dry_run=dry_run)


@task_group.command("eval")
@click.argument("name")
@click.argument("run")
@click.argument("data")
@click.argument("output", metavar="[OUT]", required=False)
@click.option("--degrade", "degrade", default=None, metavar="SPEC",
              help="Evaluation degradation [default: the one the run was trained with].")
@deprecated_alias("-o/--output", "the positional OUT (galaug task eval NAME RUN DATA OUT)", dest="output")
@click.option("--allow-domain-shift", is_flag=True,
              help="Evaluate data in another flux unit, or on a flux scale more than 10x apart, than the run's "
                   "training data (recorded in the metrics file).")
@click.option("--baselines", default=None, metavar="NAMES",
              help="Classical baselines scored beside the model, tuned on the run's training data: "
                   "comma-separated names (denoise: gaussian,wiener,tv,nlmeans,wavelet), all or none "
                   "[default: the task's choice; denoise: all but nlmeans].")
@device_option
@seed_option(help="Seed of the evaluation degradation's draws (recorded in the metrics file).")
@overwrite_option
def task_eval_cmd(name: str, run: str, data: str, degrade: str | None, output: str | None, allow_domain_shift: bool,
                  baselines: str | None, device: str, seed: int, overwrite: bool) -> None:
    """Evaluate the run RUN of task NAME on dataset DATA; write the metrics and print a summary.

    The metrics go to OUT, by default RUN/metrics-DATA.json. DATA in another
    flux unit than the run's training data, or with a per-band flux scale
    (median peak) more than 10x apart, is refused unless --allow-domain-shift.
    A task with classical baselines (denoise) scores them on the same inputs;
    --baselines chooses which.
    """
    from galaug.devices import device_name
    from galaug.runs import Run, evaluate_run

    manager = click.get_current_context().find_root().obj
    trained = Run.open(run, kind="task", name=name)
    with option_names():  # "allow_domain_shift uses it anyway" as "--allow-domain-shift ..."
        metrics, out = evaluate_run(trained, data, degrade=degrade, out=output, device=device_name(device),
                                    seed=seed, overwrite=overwrite, allow_domain_shift=allow_domain_shift,
                                    baselines=baselines, manager=manager)
    click.echo(json.dumps(metrics.get("summary", metrics), indent=2))
    click.echo(f"wrote {out}")
