"""Parametric fits of galaxy images: single Sersic profiles.

- :func:`fit_sersic` (:mod:`galaug.fitting.fit`): the seven parameters of
  the ``sersic`` source, one BFGS per image, model evaluations batched;
- :func:`render_sersic` (:mod:`galaug.fitting.render`): the model, a Sersic
  profile convolved with a Gaussian PSF and integrated over pixels.

See ``docs/fitting.md``.
"""

from galaug.fitting.fit import N_BOUNDS, Q_MIN, FitResult, fit_sersic
from galaug.fitting.render import render_sersic, sersic_b

__all__ = ["FitResult", "fit_sersic", "render_sersic", "sersic_b", "N_BOUNDS", "Q_MIN"]
