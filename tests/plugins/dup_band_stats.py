"""A plugin that registers a name another plugin already took."""

from galaug import hookimpl
from galaug.kinds import Analysis


class Copycat(Analysis):
    """Claims band-stats."""

    name = "band-stats"


@hookimpl
def galaug_register(register):
    register.analysis(Copycat)
