"""Shared click options for commands (and for plugin authors adding commands)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

__all__ = ["config_options", "overwrite_option", "codec_option", "threads_option", "seed_option", "nproc_option", "device_option", "run_options",
           "train_plan", "echo", "option_names", "deprecated_alias"]


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


#: The chunk codecs of :data:`galaug.data.CODECS` (spelled out here so that building the CLI imports no Zarr;
#: a test keeps the two equal).
CODEC_NAMES = ("raw", "zstd", "blosc-lz4", "blosc-zstd")


def _set_codec(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None and not ctx.resilient_parsing:
        from galaug.data import set_default_codec

        set_default_codec(value)


def codec_option(f):
    """``--codec NAME``: the chunk codec of the datasets the command writes (default raw: uncompressed)."""
    return click.option("--codec", type=click.Choice(CODEC_NAMES), default=None, expose_value=False,
                        callback=_set_codec,
                        help="Chunk codec of the output (default raw: uncompressed with a checksum; "
                             "see docs/dataset-format.md).")(f)


def _set_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if not ctx.resilient_parsing:
        from galaug.threads import configure

        configure(value)


def threads_option(f):
    """``--threads N``: CPU threads of the command (default: the cores it may use, shared among local ranks).

    Added to every command by :func:`galaug.cli.make_cli`.
    """
    return click.option("--threads", type=click.IntRange(min=1), default=None, expose_value=False, is_eager=True,
                        callback=_set_threads,
                        help="CPU threads to use [default: the cores this process may use, divided among "
                             "the processes of --nproc].")(f)


def seed_option(f=None, *, help: str = "Seed of every random step."):
    """``--seed N`` with a default of 0; ``help`` says what it seeds and where it is recorded, if anywhere.

    Use as ``@seed_option`` or ``@seed_option(help="Seed of ... (recorded in the provenance).")``.
    """
    option = click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help=help)
    return option(f) if f is not None else option


def device_option(f=None, *, help: str = "Where to run; auto picks cuda when available."):
    """``--device auto|cpu|cuda`` (auto: CUDA when available, else the CPU)."""
    option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                          show_default=True, help=help)
    return option(f) if f is not None else option


_ALIASES = "galaug.deprecated_aliases"


def deprecated_alias(old: str, new: str, *, dest: str, required: bool = False, **attrs):
    """A hidden option spelled ``old`` (``"-o/--output"``) kept for one release in place of ``new``.

    When it is given, the command prints ``galaug: OLD is deprecated, use NEW``
    once on stderr (rank 0 of a multi-process job) and receives the value as
    its parameter ``dest``: the new option or argument of that name (giving
    both is a usage error), or a keyword the command takes for the purpose
    (``analyze`` reads its inputs differently then). ``required``: the new
    parameter ``dest``, declared not required, must be given unless the
    alias is. ``attrs`` go to :func:`click.option` (``type``, ``metavar``).

    Parameters
    ----------
    old : str
        The deprecated spellings, ``/``-separated.
    new : str
        What to use instead, as the note words it: ``"--degrade"``, or
        ``"the positional OUT (galaug show DATASET OUT)"``.
    """
    import functools

    from click.core import ParameterSource

    def remember(ctx: click.Context, param: click.Parameter, value):
        if value is not None and not ctx.resilient_parsing:
            ctx.meta.setdefault(_ALIASES, {})[dest] = value
        return value

    def decorator(f):
        @functools.wraps(f)
        def command(*args, **kwargs):
            from galaug.distributed import is_main

            ctx = click.get_current_context()
            target = next((p for p in ctx.command.params if p.name == dest), None)
            if dest in ctx.meta.get(_ALIASES, {}):
                if is_main():
                    click.echo(f"galaug: {old} is deprecated, use {new}", err=True)
                source = ctx.get_parameter_source(dest)
                if target is not None and source not in (None, ParameterSource.DEFAULT):
                    label = (target.metavar or target.name.upper()).strip("[]") if isinstance(target, click.Argument) \
                        else max(target.opts, key=len)
                    raise click.UsageError(f"{old} is the deprecated spelling of {label}; give only {label}", ctx)
                kwargs[dest] = ctx.meta[_ALIASES][dest]
            elif required and target is not None and kwargs.get(dest) is None:
                raise click.MissingParameter(ctx=ctx, param=target)
            return f(*args, **kwargs)

        name = "deprecated_" + dest
        option = click.option(*old.split("/"), name, hidden=True, expose_value=False, callback=remember, **attrs)
        return option(command)

    return decorator


def run_options(f):
    """``--run-dir``, ``--resume RUN`` and ``--dry-run`` of the training commands."""
    f = click.option("--dry-run", is_flag=True, help="Print the resolved options and exit without training.")(f)
    f = click.option("--resume", default=None, metavar="RUN",
                     help="Continue this run from its newest good checkpoint.")(f)
    f = click.option("--run-dir", default="runs", show_default=True,
                     help="Folder that receives the numbered run directory.")(f)
    return f


def train_plan(plan, *, run_dir: str, device: str, dry_run: bool) -> None:
    """What ``train`` and ``task train`` do with a :class:`galaug.runs.TrainingPlan`.

    ``--dry-run`` prints the resolved options; otherwise the run directory is
    created (or resumed), the plugin trains, and a closing line says what was
    done and where the checkpoint and samples are.
    """
    import json

    from galaug.devices import device_name

    if dry_run:
        click.echo(json.dumps({**plan.options, "device": device_name(device)}, indent=2))
        return
    run = plan.start(root=run_dir)
    echo(f"run directory: {run.path}")
    plan.run(run, device=device_name(device))
    echo(run.summary_line())


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


@contextlib.contextmanager
def option_names() -> Iterator[None]:
    """Report a :class:`galaug.errors.ParamError` raised inside with the command's option names.

    Library functions name their parameters (``gen must be ...``); within
    this block the error names the options that set them instead
    (``--gen must be ...``): each parameter is written as the longest flag
    of the command's option of that name (``format`` is the option named
    ``format_``), or as it is when there is none.
    """
    from galaug.errors import GalaugError, ParamError

    try:
        yield
    except ParamError as exc:
        params = click.get_current_context().command.params
        flags = {p.name.rstrip("_"): max(p.opts, key=len) for p in params if isinstance(p, click.Option) and p.opts}
        raise GalaugError(exc.spelled(lambda name: flags.get(name, name))) from None
