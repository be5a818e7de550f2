"""The ``galaug`` command line, built by a factory so plugins can add commands."""

from __future__ import annotations

import sys

import click

from galaug.errors import GalaugError, describe, worker_message

__all__ = ["make_cli", "main", "GalaugGroup"]


class GalaugGroup(click.Group):
    """A click group that turns :class:`galaug.errors.GalaugError` into one line and exit status 2.

    A file-system refusal on a named path is one line and status 2 as well; an
    exception raised by a plugin's code is one line naming the plugin and
    status 1 (``GALAUG_TRACEBACK=1`` keeps the traceback); galaug's own bugs
    keep their traceback.
    """

    def invoke(self, ctx: click.Context):
        from galaug import distributed

        try:
            distributed.init()  # under torchrun (or --nproc): join the process group
            return super().invoke(ctx)
        except GalaugError as exc:
            if getattr(exc, "quiet", False):  # another rank of this torchrun job reports it
                raise click.exceptions.Exit(2) from None
            exc_ = click.ClickException(worker_message(str(exc)))
            exc_.exit_code = 2
            raise exc_ from None
        except OSError as exc:
            # a file-system refusal on a path the user gave (permissions, read-only, full disk)
            if exc.filename is None:
                _raise_if_a_plugin_bug(ctx, exc)
                raise
            exc_ = click.ClickException(f"{exc.filename}: {exc.strerror}")
            exc_.exit_code = 2
            raise exc_ from None
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # a command's own way of ending, a plugin's too
        except Exception as exc:
            _raise_if_a_plugin_bug(ctx, exc)
            raise


def _raise_if_a_plugin_bug(ctx: click.Context, exc: Exception) -> None:
    """A plugin's bug as one line naming the plugin (exit status 1); galaug's own bugs keep their traceback.

    ``GALAUG_TRACEBACK=1`` keeps the traceback of a plugin's bug too.
    """
    import os

    from galaug.pluginmanager import PluginManager

    manager = ctx.obj
    plugin = manager.blame(exc) if isinstance(manager, PluginManager) else None
    if plugin is None or os.environ.get("GALAUG_TRACEBACK", "").strip() not in ("", "0"):
        return
    out = click.ClickException(f"plugin {plugin.name!r} ({plugin.distribution} {plugin.version}) failed: "
                               f"{describe(exc)}. That is a bug in the plugin; "
                               "GALAUG_TRACEBACK=1 shows where")
    out.exit_code = 1
    raise out from None


def make_cli(manager=None) -> click.Group:
    """Build the root command: core commands come from the built-in plugin, the rest from plugins.

    Parameters
    ----------
    manager : galaug.pluginmanager.PluginManager, optional
        The process-wide manager by default.
    """
    from galaug._version import __version__
    from galaug.pluginmanager import get_manager

    manager = manager or get_manager()

    @click.group(cls=GalaugGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="galaug")
    @click.pass_context
    def cli(ctx: click.Context) -> None:
        """Augment galaxy image training sets with a learned generator, and measure whether it helps."""
        ctx.obj = manager

    manager.add_commands(cli)
    _add_threads_option(cli)
    return cli


def _add_threads_option(group: click.Group) -> None:
    """``--threads`` on every command (plugins' too), ahead of its own options; see :mod:`galaug.threads`."""
    from galaug.cli.options import threads_option

    for command in group.commands.values():
        if isinstance(command, click.Group):
            _add_threads_option(command)
        elif not any(p.name == "threads" for p in command.params):
            threads_option(command)  # click.option appends the parameter to a built command


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    cli = make_cli()
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="galaug")
