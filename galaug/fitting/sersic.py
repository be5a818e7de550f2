"""Single-Sersic fits: :func:`fit_sersic` and its model :func:`render_sersic`, under their first module's name.

The code lives in :mod:`galaug.fitting.fit` (the fit) and
:mod:`galaug.fitting.render` (the model); import from :mod:`galaug.fitting`.
"""

from galaug.fitting.fit import N_BOUNDS, Q_MIN, FitResult, fit_sersic
from galaug.fitting.render import render_sersic, sersic_b

__all__ = ["FitResult", "fit_sersic", "render_sersic", "sersic_b", "N_BOUNDS", "Q_MIN"]
