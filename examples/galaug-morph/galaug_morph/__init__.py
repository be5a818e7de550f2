"""galaug-morph: the plugin module named by the ``galaug`` entry point.

Registers the task ``size-flux`` lazily: listing plugins never imports
torch or the model; :mod:`galaug_morph.task` is imported when the task is used.
"""

from galaug import hookimpl

__all__ = ["galaug_register"]


@hookimpl
def galaug_register(register):
    register.task("galaug_morph.task:SizeFlux", name="size-flux",
                  summary="Small CNN predicting log10 half-light radius and log10 total flux; RMSE in dex")
