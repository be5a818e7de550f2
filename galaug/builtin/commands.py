"""Built-in plugin: the core commands of the ``galaug`` CLI."""

from galaug.hookspecs import hookimpl


@hookimpl
def galaug_cli(cli):
    from galaug.cli.commands import CORE_COMMANDS
    from galaug.cli.generator import generate_cmd, train_cmd
    from galaug.cli.mix import mix_cmd
    from galaug.cli.experiment import experiment_group
    from galaug.cli.task import task_group

    for command in (*CORE_COMMANDS, train_cmd, generate_cmd, mix_cmd, task_group, experiment_group):
        cli.add_command(command)
