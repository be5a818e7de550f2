"""Built-in plugin: the core commands of the ``galaug`` CLI."""

from galaug.hookspecs import hookimpl


@hookimpl
def galaug_cli(cli):
    from galaug.cli.commands import CORE_COMMANDS

    for command in CORE_COMMANDS:
        cli.add_command(command)
