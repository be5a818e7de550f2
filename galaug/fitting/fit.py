"""Single-Sersic fits of single-band images: the seven parameters of the ``sersic`` source.

Each image is optimised by its own :func:`scipy.optimize.minimize` (BFGS)
on 0.5 chi-square, with the gradient from torch autograd through the model
of :mod:`galaug.fitting.render`, from a Gauss-Newton inverse Hessian; the
model evaluations of all images in flight are batched into one torch call
(:mod:`galaug.fitting._threads`).
Parameters and conventions are those of :mod:`galaug.sources.sersic`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special
import torch

from galaug.fitting._inputs import arcsec, as_single_band, border_noise, moments
from galaug.fitting._threads import minimize_all
from galaug.fitting.render import _DTYPE, _FWHM_TO_SIGMA, _Renderer

__all__ = ["FitResult", "fit_sersic", "N_BOUNDS", "Q_MIN"]

#: the Sersic indices GalSim can draw; the fit keeps n inside them
N_BOUNDS = (0.3, 6.2)
#: the smallest axis ratio the fit allows
Q_MIN = 0.05
#: half-light radius bounds, in pixels (upper: this many times the stamp size)
_R_MIN_PIX, _R_MAX_STAMPS = 0.05, 4.0
_ETA_MAX = math.log(1.0 / Q_MIN)
#: the coarse model whose Jacobian gives BFGS its starting inverse Hessian: one sample per pixel, 16 x 10 polar nodes
#: (2 % of the peak off the full model, 8x cheaper; an approximate Hessian is all BFGS needs to start)
_COARSE = dict(oversample=1, n_radial=(6, 4), n_angle=16)


class _Parametrisation:
    """Unconstrained optimiser variables p (7,) <-> physical parameters in pixel units.

    p = (x0, y0, s_r, s_n, u1, u2, log flux): x0, y0 the centre in pixels
    from the stamp centre; log r_e = lo + (hi - lo) sigmoid(s_r) and
    log n = log 0.3 + log(6.2 / 0.3) sigmoid(s_n), bounded; u the shear
    vector before a smooth saturation, v = u / sqrt(1 + |u|^2 / eta_max^2)
    with |v| = eta = -log q < eta_max = -log(Q_MIN), and v = eta (cos 2 beta,
    sin 2 beta): the model is smooth in v through q = 1, and beta needs no
    wrap-around.
    """

    def __init__(self, image_size: int) -> None:
        self.log_r = (math.log(_R_MIN_PIX), math.log(_R_MAX_STAMPS * image_size))
        self.log_n = (math.log(N_BOUNDS[0]), math.log(N_BOUNDS[1]))

    def physical(self, p: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(x0, y0, log r_e, n, v1, v2, log flux), each (B,), from p (B, 7)."""
        x0, y0, s_r, s_n, u1, u2, log_flux = p.unbind(-1)
        log_re = self.log_r[0] + (self.log_r[1] - self.log_r[0]) * torch.sigmoid(s_r)
        n = torch.exp(self.log_n[0] + (self.log_n[1] - self.log_n[0]) * torch.sigmoid(s_n))
        scale = torch.rsqrt(1 + (u1 * u1 + u2 * u2) / _ETA_MAX**2)
        return x0, y0, log_re, n, u1 * scale, u2 * scale, log_flux

    def unconstrained(self, x0, y0, r_e, n, q, beta, flux) -> np.ndarray:
        """p (N, 7) from physical values (N,) each (r_e in pixels), clipped just inside the bounds."""

        def logit(value, lo_hi):
            frac = np.clip((np.log(value) - lo_hi[0]) / (lo_hi[1] - lo_hi[0]), 0.01, 0.99)
            return np.log(frac / (1 - frac))

        eta = np.clip(-np.log(np.clip(q, Q_MIN, 1.0)), 0.0, 0.9 * _ETA_MAX)
        u = eta / np.sqrt(1 - (eta / _ETA_MAX) ** 2)
        return np.stack([x0, y0, logit(r_e, self.log_r), logit(n, self.log_n), u * np.cos(2 * beta),
                         u * np.sin(2 * beta), np.log(np.maximum(flux, 1e-30))], axis=-1).astype(np.float64)

    def at_bound(self, p: np.ndarray, *, tol: float = 0.005) -> np.ndarray:
        """(N,) True where r_e, n or q is within ``tol`` of its range (log scale) from a bound."""
        frac_r, frac_n = scipy.special.expit(p[:, 2]), scipy.special.expit(p[:, 3])
        u = np.hypot(p[:, 4], p[:, 5])
        eta = u / np.sqrt(1 + (u / _ETA_MAX) ** 2)
        return ((np.minimum(frac_r, 1 - frac_r) < tol) | (np.minimum(frac_n, 1 - frac_n) < tol)
                | (eta > (1 - tol) * _ETA_MAX))


def _converged(res: scipy.optimize.OptimizeResult, *, decrement: float = 1e-3) -> bool:
    """BFGS converged, or stopped on precision loss where the predicted decrease g^T H^-1 g / 2 is negligible.

    Near the minimum, 0.5 chi-square stops decreasing in float64 before its
    gradient is below ``gtol`` ("precision loss"); then the Newton decrement
    with BFGS's inverse Hessian says whether any real improvement is left
    (``decrement`` in units of 0.5 chi-square).
    """
    if res.success:
        return True
    if res.status != 2 or not np.isfinite(res.fun):
        return False
    g = np.asarray(res.jac, dtype=np.float64)
    return bool(0.5 * g @ np.asarray(res.hess_inv) @ g < decrement)


@dataclasses.dataclass
class FitResult:
    """Single-Sersic fits of N images.

    Attributes
    ----------
    params : ndarray (N, 7)
        x, y [arcsec], r_half [arcsec, circularised], n, q, beta [rad, in
        [0, pi)], flux: the order and units of the ``sersic`` source's
        ``params``. NaN where the image could not be fitted at all.
    chi2_reduced : ndarray (N,)
        chi-square of the best fit over (valid pixels - 7).
    success : ndarray (N,) of bool
        ``converged``, not ``at_bound``, centre inside the stamp and
        ``snr`` >= the ``min_snr`` of the fit.
    converged : ndarray (N,) of bool
        BFGS reported convergence (largest gradient component below
        ``gtol``), or stopped on precision loss with a predicted further
        decrease of chi-square below 2e-3.
    at_bound : ndarray (N,) of bool
        r_half, n or q ended within 0.5 % (of its log range) of a bound.
    snr : ndarray (N,)
        Signal-to-noise ratio of the fitted model, sqrt(sum(model^2 / noise^2)).
    noise_std : ndarray (N,)
        The noise used in chi-square (given, or estimated from the border).
    n_iter : ndarray (N,) of int
        BFGS iterations.
    """

    params: np.ndarray
    chi2_reduced: np.ndarray
    success: np.ndarray
    converged: np.ndarray
    at_bound: np.ndarray
    snr: np.ndarray
    noise_std: np.ndarray
    n_iter: np.ndarray

    @property
    def n_failed(self) -> int:
        """Number of images whose fit did not succeed."""
        return int(np.count_nonzero(~self.success))


def fit_sersic(images: Any, *, pixel_scale: Any, psf_fwhm: Any, noise_std: Any = None, init: Any = None,
               max_iter: int = 200, gtol: float = 1e-3, min_snr: float = 5.0, oversample: int | None = None,
               batch_size: int = 256, chunk_size: int = 64) -> FitResult:
    """Fit a single Sersic profile (the seven parameters of the ``sersic`` source) to each image.

    The model is evaluated in torch (float64): the analytic Sersic surface
    brightness (b_n from the Ciotti & Bertin 1999 expansion), normalised to
    the total flux, integrated over pixels and convolved with the Gaussian
    PSF (a polar grid for the centre, sub-pixels elsewhere; see
    ``docs/fitting.md``). It reproduces GalSim's drawing to about 1e-3 of
    the peak.

    Each image is optimised by its own ``scipy.optimize.minimize(method=
    "BFGS", jac=True)`` on 0.5 chi-square, with the gradient from torch
    autograd. The optimisers of ``batch_size`` images run concurrently in
    worker threads, and their objective calls are gathered so that the
    calling thread evaluates the models of all images in flight in one
    batched torch call per round (not a joint BFGS over the stacked vector,
    whose single line search and dense Hessian update would couple the
    images). Each BFGS starts from the inverse Gauss-Newton Hessian of a
    coarse version of the model at its starting point (batched, about the
    cost of one evaluation) instead of the identity, which halves the
    model evaluations of a fit. A model evaluation with its gradient costs
    about 1.2 ms per 32x32 image on one CPU thread and a fit about 15 of
    them; fits/s are measured in ``docs/fitting.md``.

    Parameters
    ----------
    images : array_like (N, H, W) or (N, 1, H, W)
        Single-band images in flux per pixel; non-finite pixels are ignored.
    pixel_scale : float or Quantity
        Arcsec per pixel.
    psf_fwhm : float or Quantity
        FWHM of the Gaussian PSF, arcsec.
    noise_std : float or array_like (N,), optional
        Gaussian pixel noise per image. If None, 1.4826 MAD of the 2-pixel
        border, with a floor of 1e-3 of the image's peak (noiseless images).
    init : array_like (N, 7), optional
        Starting parameters in the source's units; image moments otherwise
        (centroid, second moments for q and beta, summed flux, elliptical
        half-light radius, n = 2).
    max_iter : int
        BFGS iterations per image at most.
    gtol : float
        BFGS stops when the largest gradient component of 0.5 chi-square
        (with respect to the unconstrained variables) is below this.
    min_snr : float
        A fit whose model has a lower signal-to-noise ratio is a failure
        (an image of noise alone).
    oversample : int, optional
        Sub-pixels per pixel and axis away from the centre; by default the
        smallest number (at least 2) that keeps their spacing below 2/3 of
        the PSF sigma (3 for the 1 arcsec PSF on 0.792 arcsec pixels, 2 on
        0.396 arcsec pixels).
    batch_size : int
        Images optimised concurrently (the batch of one model evaluation).
    chunk_size : int
        Images per torch forward/backward pass (bounds memory).

    Returns
    -------
    FitResult
    """
    scale = arcsec(pixel_scale, "pixel_scale")
    psf_sigma = arcsec(psf_fwhm, "psf_fwhm") * _FWHM_TO_SIGMA / scale
    data = as_single_band(images)
    n_images, height, width = data.shape
    if height != width:
        raise ValueError(f"square images expected, got {height}x{width}")
    if max_iter < 1 or batch_size < 1 or chunk_size < 1:
        raise ValueError("max_iter, batch_size and chunk_size must be at least 1")
    valid = np.isfinite(data)
    sigma = _noise(data, valid, noise_std)
    n_valid = valid.sum(axis=(1, 2))
    fittable = (n_valid >= 16) & np.isfinite(sigma) & (sigma > 0)  # sigma 0: an image of zeros
    param = _Parametrisation(height)
    p0 = _starting_points(param, data, valid, sigma, fittable, init=init, scale=scale, psf_sigma=psf_sigma)
    chi2 = _Chi2(_Renderer(height, width, psf_sigma=psf_sigma, oversample=oversample), param, data, valid,
                 np.where(fittable, sigma, 1.0), chunk_size=chunk_size)
    todo = [int(i) for i in np.flatnonzero(fittable)]
    hess_inv0 = np.tile(np.eye(7), (n_images, 1, 1))
    if todo:
        hess_inv0[todo] = chi2.gauss_newton_inverse(_Renderer(height, width, psf_sigma=psf_sigma, **_COARSE),
                                                    np.array(todo), p0[todo])
    results = minimize_all(chi2.value_and_grad, p0, todo, workers=min(batch_size, len(todo)), max_iter=max_iter,
                           gtol=gtol, hess_inv0=hess_inv0)
    return _fit_result(chi2, results, todo, n_valid=n_valid, noise_std=sigma, scale=scale, min_snr=min_snr)


def _noise(data: np.ndarray, valid: np.ndarray, noise_std: Any) -> np.ndarray:
    """The noise (N,) of each image: ``noise_std`` checked and broadcast, or estimated from the border."""
    if noise_std is None:
        return border_noise(data, valid)
    sigma = np.broadcast_to(np.asarray(noise_std, dtype=np.float64), (len(data),)).copy()
    if not (np.isfinite(sigma).all() and (sigma > 0).all()):
        raise ValueError("noise_std must be positive and finite")
    return sigma


def _starting_points(param: _Parametrisation, data: np.ndarray, valid: np.ndarray, sigma: np.ndarray,
                     fittable: np.ndarray, *, init: Any, scale: float, psf_sigma: float) -> np.ndarray:
    """p0 (N, 7): ``init`` (the source's units) or the image moments, as unconstrained variables."""
    n_images = len(data)
    if init is not None:
        start = np.asarray(init, dtype=np.float64)
        if start.shape != (n_images, 7):
            raise ValueError(f"init must be ({n_images}, 7), got shape {start.shape}")
        return param.unconstrained(start[:, 0] / scale, start[:, 1] / scale, start[:, 2] / scale, *start[:, 3:].T)
    start = np.array([moments(data[i], valid[i], sigma[i], psf_sigma) if fittable[i] else (0, 0, 2, 2, 1, 0, 1)
                      for i in range(n_images)], dtype=np.float64)
    return param.unconstrained(*start.T)


class _Chi2:
    """chi-square of the model against the images (invalid pixels weigh nothing), in chunks of images."""

    def __init__(self, renderer: _Renderer, param: _Parametrisation, data: np.ndarray, valid: np.ndarray,
                 sigma: np.ndarray, *, chunk_size: int) -> None:
        self.renderer, self.param, self.chunk_size = renderer, param, chunk_size
        self.target = torch.as_tensor(np.where(valid, data, 0.0), dtype=_DTYPE)
        self.weight = torch.as_tensor(valid / sigma[:, None, None] ** 2, dtype=_DTYPE)

    def __call__(self, index: np.ndarray, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """chi-square (B,) and the model (B, H, W) of the images ``index`` at the variables p (B, 7)."""
        model = self.renderer(*self.param.physical(p))
        idx = torch.as_tensor(index)
        return (self.weight[idx] * (self.target[idx] - model) ** 2).sum(dim=(1, 2)), model

    def gauss_newton_inverse(self, renderer: _Renderer, index: np.ndarray, P: np.ndarray, *, step: float = 1e-4,
                             floor: float = 1.0) -> np.ndarray:
        """Inverse Gauss-Newton Hessians (B, 7, 7) of 0.5 chi-square at P (B, 7), BFGS's starting inverse Hessians.

        H = J^T W J with J (pixels, 7) the Jacobian of ``renderer``'s model
        (a coarse one will do) by forward differences of ``step`` in the
        variables (the model is proportional to the flux: d/d log flux is
        the model itself). Eigenvalues of H are floored at ``floor`` (1: no
        first step bolder than from BFGS's default identity); the identity
        where H is not finite.
        """
        hess = np.empty((len(index), 7, 7))
        with torch.no_grad():
            for s in range(0, len(index), self.chunk_size):
                p = torch.as_tensor(P[s:s + self.chunk_size], dtype=_DTYPE)
                shifted = p[None].repeat(7, 1, 1)  # (7, B, 7): unshifted, then variable k = 0..5 shifted
                shifted[1:, :, :6] += step * torch.eye(6, dtype=_DTYPE)[:, None, :]
                model = renderer(*self.param.physical(shifted.flatten(0, 1))).unflatten(0, (7, len(p)))
                jac = torch.cat([(model[1:] - model[:1]) / step, model[:1]]).flatten(2)  # (7, B, H*W)
                weight = self.weight[torch.as_tensor(index[s:s + self.chunk_size])].flatten(1)  # (B, H*W)
                hess[s:s + len(p)] = torch.einsum("kbp,bp,lbp->bkl", jac, weight, jac).numpy()
        bad = ~np.isfinite(hess).all(axis=(1, 2))
        hess[bad] = np.eye(7)
        lam, vec = np.linalg.eigh(hess)
        inverse = (vec / np.maximum(lam, floor)[:, None, :]) @ vec.transpose(0, 2, 1)
        return 0.5 * (inverse + inverse.transpose(0, 2, 1))  # exactly symmetric, as BFGS checks

    def value_and_grad(self, index: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0.5 chi-square (B,) and its gradient (B, 7) for the optimisers; inf where not finite."""
        chunk = self.chunk_size
        f, g = np.empty(len(index)), np.empty_like(P)
        with torch.enable_grad():
            for s in range(0, len(index), chunk):
                p = torch.tensor(P[s:s + chunk], dtype=_DTYPE, requires_grad=True)
                chi2, _ = self(index[s:s + chunk], p)
                (0.5 * chi2).sum().backward()
                f[s:s + chunk] = 0.5 * chi2.detach().numpy()
                g[s:s + chunk] = p.grad.numpy()
        bad = ~(np.isfinite(f) & np.isfinite(g).all(axis=1))
        f[bad], g[bad] = np.inf, 0.0  # the line search backs off
        return f, g


def _fit_result(chi2: _Chi2, results: dict[int, scipy.optimize.OptimizeResult], todo: list[int], *,
                n_valid: np.ndarray, noise_std: np.ndarray, scale: float, min_snr: float) -> FitResult:
    """The fits of the images ``todo`` (the others stay NaN and failed) in the source's units, judged."""
    n_images, param = len(n_valid), chi2.param
    params = np.full((n_images, 7), np.nan)
    chi2_red, snr = np.full(n_images, np.nan), np.full(n_images, np.nan)
    converged, at_bound = np.zeros(n_images, dtype=bool), np.zeros(n_images, dtype=bool)
    n_iter = np.zeros(n_images, dtype=np.int64)
    if todo:
        index = np.array(todo)
        p_best = np.stack([results[i].x for i in todo])
        converged[index] = [_converged(results[i]) for i in todo]
        n_iter[index] = [results[i].nit for i in todo]
        at_bound[index] = param.at_bound(p_best)
        with torch.no_grad():
            for s in range(0, len(index), chi2.chunk_size):
                sl = slice(s, s + chi2.chunk_size)
                p = torch.as_tensor(p_best[sl], dtype=_DTYPE)
                value, model = chi2(index[sl], p)
                chi2_red[index[sl]] = value.numpy() / np.maximum(n_valid[index[sl]] - 7, 1)
                snr[index[sl]] = torch.sqrt((chi2.weight[index[sl]] * model**2).sum(dim=(1, 2))).numpy()
                x0, y0, log_re, n, v1, v2, log_flux = (t.numpy() for t in param.physical(p))
                beta = np.mod(0.5 * np.arctan2(v2, v1), np.pi)
                beta[beta >= np.pi] = 0.0  # a tiny negative angle rounds up to pi
                params[index[sl]] = np.stack([x0 * scale, y0 * scale, np.exp(log_re) * scale, n,
                                              np.exp(-np.hypot(v1, v2)), beta, np.exp(log_flux)], axis=1)
    height, width = chi2.renderer.height, chi2.renderer.width
    inside = (np.abs(params[:, 0] / scale) < width / 2) & (np.abs(params[:, 1] / scale) < height / 2)
    success = converged & ~at_bound & inside & (snr >= min_snr) & np.isfinite(chi2_red)
    return FitResult(params=params, chi2_reduced=chi2_red, success=success, converged=converged, at_bound=at_bound,
                     snr=snr, noise_std=noise_std, n_iter=n_iter)
