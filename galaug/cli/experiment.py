"""``galaug experiment ratios`` and ``sizes``: a task trained on every arm of real/generated mixes, K seeds each."""

from __future__ import annotations

import contextlib

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
    from galaug.experiment import load_experiment, run_experiment

    config, arms, task_config = load_experiment(config_file, oracle=oracle)
    if seeds:
        config.seeds = convert(seeds, tuple[int, ...], "seeds")
    if out:
        config.out = out
    with _oracle_spelled(oracle):
        result = run_experiment(config, arms, task_config, manager=click.get_current_context().find_root().obj,
                                echo=click.echo, overwrite=overwrite, inputs=[config_file])
    click.echo()
    click.echo((result / "results.md").read_text(), nl=False)
    click.echo(f"wrote {result}/results.csv, results.json, results.md, results.png")


@experiment_group.command("sizes")
@click.argument("config_file", metavar="CONFIG.toml")
@click.argument("out", metavar="[OUT]", required=False)
@click.option("--sizes", "sizes_text", default=None, help="Override the real-set sizes, e.g. 50,100,200,all.")
@click.option("--seeds", default=None, help="Override the seeds, e.g. 0,1,2.")
@click.option("--overwrite", is_flag=True,
              help="Start afresh instead of resuming: once the config is checked, delete OUT (only a folder that "
                   "holds nothing but an experiment's output).")
@click.option("--oracle", is_flag=True, help="Add the oracle's curve (as oracle = true).")
def sizes_cmd(config_file: str, out: str | None, sizes_text: str | None, seeds: str | None, overwrite: bool,
              oracle: bool) -> None:
    """The learning curve: the task's metric against the number of real images, with and without generated images.

    For every size n of the file's `sizes` (default 50, 100, 200, 400, 800,
    all; those above the real set dropped): n real images alone, and with
    `size_gen` (default 5x) generated images per real image from each
    generator and the oracle. Every arm trains for the same number of
    gradient steps. OUT defaults to the file's `out`/sizes; writes the
    experiment's results there plus curve.png (error bars over seeds, a star
    where the oracle's gain exceeds the seed spread), curve.md and
    curve.json. Resumes like `galaug experiment ratios`.
    """
    from galaug.config import convert
    from galaug.experiment import load_experiment
    from galaug.experiment_sizes import check_sizes, run_sizes, sweep_config

    config, _, task_config = load_experiment(config_file, oracle=oracle)
    if seeds:
        config.seeds = convert(seeds, tuple[int, ...], "seeds")
    if sizes_text:
        parts = [p.strip() for p in sizes_text.split(",")]
        config.sizes = check_sizes("--sizes", [p if p.lower() == "all" else _count(p) for p in parts],
                                   config.size_gen)
    config = sweep_config(config, out)
    with _oracle_spelled(oracle):
        result = run_sizes(config, task_config, sizes=config.sizes, size_gen=config.size_gen,
                           manager=click.get_current_context().find_root().obj, echo=click.echo,
                           overwrite=overwrite, inputs=[config_file])
    click.echo()
    click.echo((result / "curve.md").read_text(), nl=False)
    click.echo(f"wrote {result}/curve.png, curve.md, curve.json and the experiment's results.*")


def _count(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


@contextlib.contextmanager
def _oracle_spelled(flag: bool):
    """An oracle error names --oracle when the flag asked for it, else the file's key."""
    from galaug.errors import GalaugError, ParamError

    spelling = {"oracle": "--oracle" if flag else "oracle = true in the experiment file",
                "oracle_seed": "oracle_seed in the experiment file"}
    try:
        yield
    except ParamError as exc:
        if exc.param not in spelling:
            raise
        raise GalaugError(exc.spelled(lambda name: spelling.get(name, name))) from None
