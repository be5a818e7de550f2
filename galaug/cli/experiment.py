"""``galaug experiment ratios``: a task trained on every arm of real/generated mixes, K seeds each."""

from __future__ import annotations

import click

__all__ = ["experiment_group"]


@click.group("experiment")
def experiment_group() -> None:
    """Experiments that compare training sets built from real and generated images."""


@experiment_group.command("ratios")
@click.argument("config_file", metavar="CONFIG.toml")
@click.option("--seeds", default=None, help="Override the seeds, e.g. 0,1,2.")
@click.option("--out", default=None, help="Override the output folder.")
def ratios_cmd(config_file: str, seeds: str | None, out: str | None) -> None:
    """Run the ratio experiment described by CONFIG.toml; resumes, skipping finished (arm, seed) pairs.

    Writes OUT/results.csv, results.json, results.md (mean ± std per arm and
    test set) and results.png (bars with error bars, one panel per test set),
    and prints the table.
    """
    from galaug.config import convert
    from galaug.experiment import load_experiment, run_experiment

    config, arms, task_config = load_experiment(config_file)
    if seeds:
        config.seeds = convert(seeds, tuple[int, ...], "seeds")
    if out:
        config.out = out
    manager = click.get_current_context().find_root().obj
    result = run_experiment(config, arms, task_config, manager=manager, echo=click.echo)
    click.echo()
    click.echo((result / "results.md").read_text(), nl=False)
    click.echo(f"wrote {result}/results.csv, results.json, results.md, results.png")
