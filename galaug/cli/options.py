"""Shared click options for commands (and for plugin authors adding commands)."""

from __future__ import annotations

import click

__all__ = ["config_options", "overwrite_option", "seed_option", "nproc_option", "echo"]


def config_options(f):
    """``--config FILE.toml`` and repeatable ``--set key=value``, validated against the plugin's Config."""
    f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override one config key (repeatable); dotted keys reach nested tables.")(f)
    f = click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     metavar="FILE.toml", help="Config file; keys as in `galaug config KIND NAME`.")(f)
    return f


def overwrite_option(f):
    """``--overwrite``: replace an existing output, only once the new one is complete."""
    return click.option("--overwrite", is_flag=True,
                        help="Replace an existing output (only after the new one is complete).")(f)


def seed_option(f):
    """``--seed N`` with a default of 0, recorded in the provenance."""
    return click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                        help="Seed of every random step (recorded in the provenance).")(f)


def _launch(ctx: click.Context, param: click.Parameter, value: int) -> int:
    import sys

    from galaug.distributed import launch, launched, strip_nproc

    if value > 1 and not launched():
        ctx.exit(launch(value, strip_nproc(sys.argv[1:])))
    return value


def nproc_option(f):
    """``--nproc N``: rerun the command as N processes on this machine (torch.distributed, torchrun's environment)."""
    return click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True, expose_value=False,
                        callback=_launch, help="Run as N processes on this machine (see docs/cluster.md).")(f)


def echo(message: str) -> None:
    """``click.echo`` on rank 0 only: a command run as several processes reports once."""
    from galaug.distributed import is_main

    if is_main():
        click.echo(message)
