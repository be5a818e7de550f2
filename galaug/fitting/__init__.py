"""Parametric fits of galaxy images: single Sersic profiles (:func:`fit_sersic`)."""

from galaug.fitting.sersic import FitResult, fit_sersic, render_sersic

__all__ = ["FitResult", "fit_sersic", "render_sersic"]
