"""``galaug experiment ratios``: a task trained on every arm of real/generated mixes, K seeds each."""

from __future__ import annotations

import click

from galaug.cli.options import deprecated_alias

__all__ = ["experiment_group"]


@click.group("experiment")
def experiment_group() -> None:
    """Experiments that compare training sets built from real and generated images."""


@experiment_group.command("ratios")
@click.argument("config_file", metavar="CONFIG.toml")
@click.argument("out", metavar="[OUT]", required=False)
@click.option("--seeds", default=None, help="Override the seeds, e.g. 0,1,2.")
@deprecated_alias("--out", "the positional OUT (galaug experiment ratios CONFIG.toml OUT)", dest="out")
@click.option("--overwrite", is_flag=True,
              help="Start afresh instead of resuming: once the config is checked, delete OUT (only a folder that "
                   "holds nothing but an experiment's output).")
@click.option("--oracle", is_flag=True,
              help="Add the oracle arms (as oracle = true): generated images drawn afresh from the simulator of the "
                   "real set, which must be simulated.")
def ratios_cmd(config_file: str, out: str | None, seeds: str | None, overwrite: bool, oracle: bool) -> None:
    """Run the ratio experiment described by CONFIG.toml; resumes, skipping finished (arm, seed) pairs.

    OUT, the output folder, defaults to the file's `out`. Writes
    OUT/results.csv, results.json, results.md (a summary in words, then
    mean ± std per arm and test set, and the usefulness of each generator
    with the oracle) and results.png (bars with error bars, one panel per
    test set), and prints the summary and the table. --overwrite starts
    afresh instead of resuming.
    """
    from galaug.config import convert
    from galaug.errors import GalaugError, ParamError
    from galaug.experiment import load_experiment, run_experiment

    config, arms, task_config = load_experiment(config_file, oracle=oracle)
    if seeds:
        config.seeds = convert(seeds, tuple[int, ...], "seeds")
    if out:
        config.out = out
    manager = click.get_current_context().find_root().obj
    spelling = {"oracle": "--oracle" if oracle else "oracle = true in the experiment file",
                "oracle_seed": "oracle_seed in the experiment file"}
    try:
        result = run_experiment(config, arms, task_config, manager=manager, echo=click.echo, overwrite=overwrite,
                                inputs=[config_file])
    except ParamError as exc:
        if exc.param not in spelling:
            raise
        raise GalaugError(exc.spelled(lambda name: spelling.get(name, name))) from None
    click.echo()
    click.echo((result / "results.md").read_text(), nl=False)
    click.echo(f"wrote {result}/results.csv, results.json, results.md, results.png")
