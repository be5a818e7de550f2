"""Single-Sersic fits: the model against GalSim, parameter recovery, beta wrap-around, failures."""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest

from galaug.fitting import FitResult, fit_sersic, render_sersic
from galaug.sources.sersic import Sersic, SersicConfig, draw_sersic

SIZE, SCALE, FWHM = 32, 0.792, 1.0  # the ALAE `tiny` geometry: SDSS pixels binned 2x2
NOISE = 0.1  # flux 1000: peaks of about 5 to 100, S/N of the whole galaxy above 500


def config(**kw) -> SersicConfig:
    return SersicConfig(image_size=SIZE, pixel_scale=SCALE, psf_fwhm=FWHM, **kw)


def angle_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| for angles defined modulo pi."""
    return np.abs((a - b + np.pi / 2) % np.pi - np.pi / 2)


def assert_recovered(fit: FitResult, truth: np.ndarray, *, xy: float, r_half: float, n: float, q: float,
                     beta: float, flux: float) -> None:
    assert fit.success.all(), f"failed: {np.flatnonzero(~fit.success)}"
    p = fit.params
    np.testing.assert_array_less(np.abs(p[:, :2] - truth[:, :2]), xy)
    np.testing.assert_array_less(np.abs(p[:, 2] / truth[:, 2] - 1), r_half)
    np.testing.assert_array_less(np.abs(p[:, 3] / truth[:, 3] - 1), n)
    np.testing.assert_array_less(np.abs(p[:, 4] - truth[:, 4]), q)
    elongated = truth[:, 4] < 0.8
    np.testing.assert_array_less(angle_difference(p[elongated, 5], truth[elongated, 5]), beta)
    np.testing.assert_array_less(np.abs(p[:, 6] / truth[:, 6] - 1), flux)
    assert ((p[:, 5] >= 0) & (p[:, 5] < np.pi)).all()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def noisy():
    return Sersic(config(noise_std=NOISE)).draw(range(16), seed=7)


@pytest.mark.parametrize("size, scale, params", [
    (32, 0.792, (0.3, -0.5, 1.0, 4.0, 0.4, 0.3, 1000.0)),
    (32, 0.792, (-1.0, 1.0, 2.0, 2.5, 0.1, 3.0, 500.0)),
    (33, 0.396, (0.05, 0.0, 3.0, 1.0, 0.5, 3.1, 1000.0)),
    (16, 0.792, (0.0, 0.0, 0.8, 6.0, 0.9, 0.0, 10.0)),
])
def test_model_reproduces_galsim(size, scale, params):
    """Same centre (even and odd sizes), same shear and position-angle convention, same pixel integration."""
    cfg = SersicConfig(image_size=size, pixel_scale=scale, psf_fwhm=FWHM)
    reference = draw_sersic(params, cfg)[0].astype(np.float64)
    model = render_sersic(params, image_size=size, pixel_scale=scale, psf_fwhm=FWHM)[0]
    assert np.abs(model - reference).max() < 3e-3 * reference.max()


def test_noiseless_images_are_fitted_to_high_precision():
    images, truth = Sersic(config()).draw(range(8), seed=3)
    fit = fit_sersic(images, pixel_scale=SCALE, psf_fwhm=FWHM)
    assert_recovered(fit, truth, xy=0.005, r_half=0.005, n=0.01, q=0.005, beta=0.005, flux=0.005)


def test_noisy_images_recover_the_parameters_with_reduced_chi2_near_one(noisy):
    images, truth = noisy
    fit = fit_sersic(images[:, 0], pixel_scale=SCALE * u.arcsec, psf_fwhm=FWHM, noise_std=NOISE)
    assert_recovered(fit, truth, xy=0.05, r_half=0.05, n=0.15, q=0.05, beta=0.05, flux=0.03)
    # 1017 degrees of freedom: each reduced chi-square scatters by 0.044 around 1, their mean by 0.011
    assert abs(np.mean(fit.chi2_reduced) - 1) < 0.04
    assert (np.abs(fit.chi2_reduced - 1) < 0.2).all()
    assert fit.n_failed == 0 and (fit.snr > 100).all()


def test_the_noise_is_estimated_from_the_border(noisy):
    images, truth = noisy
    fit = fit_sersic(images[:6], pixel_scale=SCALE, psf_fwhm=FWHM, noise_std=None)
    np.testing.assert_allclose(fit.noise_std, NOISE, rtol=0.15)
    assert_recovered(fit, truth[:6], xy=0.05, r_half=0.05, n=0.15, q=0.05, beta=0.05, flux=0.03)


@pytest.mark.parametrize("beta_range", [(0.0, 0.03), (math.pi - 0.03, math.pi)])
def test_position_angles_near_zero_and_pi(beta_range):
    images, truth = Sersic(config(q_range=(0.4, 0.7), noise_std=NOISE, beta_range=beta_range)).draw(range(4), seed=1)
    fit = fit_sersic(images, pixel_scale=SCALE, psf_fwhm=FWHM, noise_std=NOISE)
    assert_recovered(fit, truth, xy=0.05, r_half=0.05, n=0.15, q=0.05, beta=0.05, flux=0.03)


def test_noise_nan_and_empty_images_fail_without_stopping_the_others(noisy):
    images, truth = noisy
    rng = np.random.default_rng(0)
    bad = rng.normal(0, NOISE, (4, SIZE, SIZE))
    bad[1] = np.nan
    bad[2, :, : SIZE // 2] = np.nan  # half noise, half NaN
    bad[3] = 0.0
    fit = fit_sersic(np.concatenate([bad[:, None], images[:2]]), pixel_scale=SCALE, psf_fwhm=FWHM, noise_std=None)
    assert fit.success.tolist() == [False] * 4 + [True] * 2
    assert fit.n_failed == 4
    assert np.isnan(fit.params[1]).all() and np.isnan(fit.params[3]).all()
    np.testing.assert_allclose(fit.params[4:, 6], truth[:2, 6], rtol=0.03)


def test_nan_pixels_are_ignored(noisy):
    images, truth = noisy
    images = images[:2, 0].copy()
    images[:, :3, :] = np.nan
    fit = fit_sersic(images, pixel_scale=SCALE, psf_fwhm=FWHM, noise_std=NOISE)
    assert_recovered(fit, truth[:2], xy=0.05, r_half=0.05, n=0.15, q=0.05, beta=0.05, flux=0.03)


def test_given_start_and_per_image_noise(noisy):
    images, truth = noisy
    fit = fit_sersic(images[:3], pixel_scale=SCALE, psf_fwhm=FWHM, noise_std=np.full(3, NOISE), init=truth[:3])
    assert_recovered(fit, truth[:3], xy=0.05, r_half=0.05, n=0.15, q=0.05, beta=0.05, flux=0.03)


def test_bad_arguments_are_clear_errors():
    image = np.zeros((1, 2, 16, 16))
    with pytest.raises(ValueError, match="single-band"):
        fit_sersic(image, pixel_scale=SCALE, psf_fwhm=FWHM)
    with pytest.raises(ValueError, match="noise_std"):
        fit_sersic(image[:, 0], pixel_scale=SCALE, psf_fwhm=FWHM, noise_std=-1.0)
    with pytest.raises(ValueError, match="pixel_scale must be an angle"):
        fit_sersic(image[:, 0], pixel_scale=1 * u.m, psf_fwhm=FWHM)
    with pytest.raises(ValueError, match="psf_fwhm"):
        fit_sersic(image[:, 0], pixel_scale=SCALE, psf_fwhm=0.0)


def test_an_error_in_the_batched_model_reaches_the_caller(noisy, monkeypatch):
    """Every optimiser thread stops and the error is raised, instead of a hang."""
    import galaug.fitting.render as module

    def broken(self, *args):
        raise FloatingPointError("model exploded")

    monkeypatch.setattr(module._Renderer, "__call__", broken)
    with pytest.raises(FloatingPointError, match="model exploded"):
        fit_sersic(noisy[0][:5], pixel_scale=SCALE, psf_fwhm=FWHM, noise_std=NOISE, batch_size=2)


def test_hand_written_gradients_match_finite_differences():
    """The renderer's two custom backward passes (sub-pixel profile, polar projection) against gradcheck.

    Elongated, off-centre, near-cusp (n = 4) and round profiles, so every
    term of both passes matters; a wrong term fails by far more than the tolerance.
    """
    import torch

    from galaug.fitting.fit import _Parametrisation
    from galaug.fitting.render import _Renderer

    renderer = _Renderer(10, 10, psf_sigma=0.7, oversample=2)
    param = _Parametrisation(10)
    start = param.unconstrained(np.array([0.3, -1.2]), np.array([-0.4, 0.9]), np.array([1.5, 2.5]),
                                np.array([4.0, 1.0]), np.array([0.3, 0.95]), np.array([0.5, 2.0]),
                                np.array([100.0, 50.0]))
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: renderer(*param.physical(p)), (p,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gauss_newton_start_is_a_bounded_inverse_hessian_close_to_the_full_models(noisy):
    """BFGS's starting inverse Hessians: symmetric, positive, no eigenvalue above 1 (never bolder than the
    identity), the identity where the model is not finite, and the coarse model's close to the full model's."""
    from galaug.fitting.fit import _COARSE, _Chi2, _Parametrisation
    from galaug.fitting.render import _FWHM_TO_SIGMA, _Renderer

    images = noisy[0][:4, 0].astype(np.float64)
    sigma = FWHM * _FWHM_TO_SIGMA / SCALE
    param = _Parametrisation(SIZE)
    full = _Renderer(SIZE, SIZE, psf_sigma=sigma)
    chi2 = _Chi2(full, param, images, np.isfinite(images), np.full(4, NOISE), chunk_size=3)
    truth = noisy[1][:4]
    p = param.unconstrained(truth[:, 0] / SCALE, truth[:, 1] / SCALE, truth[:, 2] / SCALE, *truth[:, 3:].T)
    p[3] = np.nan
    index = np.arange(4)
    coarse = chi2.gauss_newton_inverse(_Renderer(SIZE, SIZE, psf_sigma=sigma, **_COARSE), index, p)
    np.testing.assert_array_equal(coarse, coarse.transpose(0, 2, 1))
    lam = np.linalg.eigvalsh(coarse)
    assert (lam > 0).all() and (lam <= 1 + 1e-12).all()
    np.testing.assert_array_equal(coarse[3], np.eye(7))
    exact = chi2.gauss_newton_inverse(full, index[:3], p[:3])
    for a, b in zip(coarse[:3], exact):
        assert np.linalg.norm(a - b) < 0.1 * np.linalg.norm(b)
