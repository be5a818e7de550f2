"""galaug-bandstats: the plugin module named by the ``galaug`` entry point."""

from galaug import hookimpl


@hookimpl
def galaug_register(register):
    # Lazy: the module is imported only when the analysis is used.
    register.analysis("galaug_bandstats.analysis:BandStats", name="band-stats",
                      summary="Per-band sky level, noise, flux percentiles and pixel histograms")
