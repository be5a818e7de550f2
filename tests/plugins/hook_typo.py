"""A deliberately broken plugin: it implements a hook that does not exist."""

from galaug import hookimpl


@hookimpl
def galaug_regster(register):
    pass
