"""Single-Sersic fits of single-band images: the seven parameters of the ``sersic`` source.

The model is an analytic Sersic profile written in torch (float64), so that
the gradient of chi-square comes from autograd (with hand-written backward
passes for the two costliest pieces); each image is optimised by
its own :func:`scipy.optimize.minimize` (BFGS), and the model evaluations
of all images in flight are batched into one torch call (see
:func:`fit_sersic`).

Conventions are those of :mod:`galaug.sources.sersic` and GalSim's
``drawImage``: x to the right (array column), y up (array row), the
profile centre at ``(x, y)`` arcsec from the stamp centre (between the two
central pixels for even sizes), ``r_half`` the circularised half-light
radius sqrt(a b), ``q = b / a``, ``beta`` the angle of the major axis from
+x, counter-clockwise, ``flux`` the total flux of the untruncated profile.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special
import torch

__all__ = ["FitResult", "fit_sersic", "render_sersic", "sersic_b", "N_BOUNDS", "Q_MIN"]

#: the Sersic indices GalSim can draw; the fit keeps n inside them
N_BOUNDS = (0.3, 6.2)
#: the smallest axis ratio the fit allows
Q_MIN = 0.05
#: half-light radius bounds, in pixels (upper: this many times the stamp size)
_R_MIN_PIX, _R_MAX_STAMPS = 0.05, 4.0
_ETA_MAX = math.log(1.0 / Q_MIN)
_DTYPE = torch.float64
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def sersic_b(n: torch.Tensor | float) -> torch.Tensor:
    """b_n such that the radius r_e encloses half the light, Ciotti & Bertin (1999) eq. 18.

    The asymptotic expansion b_n = 2n - 1/3 + 4/(405 n) + 46/(25515 n^2) + ...
    (terms to n^-4) is accurate to better than 1e-6 relative for n >= 0.36 and
    to about 1e-4 at n = 0.3; it is differentiable in n, which the exact
    ``scipy.special.gammaincinv(2n, 0.5)`` is not in torch.
    """
    n = torch.as_tensor(n, dtype=_DTYPE)
    return (2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2) + 131 / (1148175 * n**3)
            - 2194697 / (30690717750 * n**4))


def _sinhc_cosh(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cosh(sqrt(t)) and sinh(sqrt(t)) / sqrt(t), smooth (and with finite gradients) at t = 0."""
    small = t < 1e-6
    eta = torch.sqrt(torch.where(small, torch.ones_like(t), t))
    cosh = torch.where(small, 1 + t / 2 + t * t / 24, torch.cosh(eta))
    sinhc = torch.where(small, 1 + t / 6 + t * t / 120, torch.sinh(eta) / eta)
    return cosh, sinhc


def _default_oversample(psf_sigma: float) -> int:
    """Sub-pixels per pixel and axis: spacing at most 2/3 of the PSF sigma (pixels), at least 2."""
    return max(2, math.ceil(1.5 / psf_sigma))


class _OuterProfile(torch.autograd.Function):
    """S (1 - W) on the sub-pixel grid, (B, Gy, Gx), with a hand-written backward pass.

    Here the fitter spends most of its time: with autograd every elementwise
    step of the profile and the window keeps a full (B, Gy, Gx) temporary
    and gets its own backward kernel. Written out, the forward pass takes
    about 20 passes over the grid and the backward pass 6, plus row and
    column sums (the gradients with respect to the quadratic forms and the
    centre reduce to sums of dx^2, dy^2, dx dy, dx and dy against two
    grids). ``tests/test_fitting.py`` checks it with ``gradcheck``.

    Inputs: ``ux`` (Gx,), ``uy`` (Gy,) sub-pixel centres; per image (B,):
    centre ``x0``, ``y0``; ``form`` (B, 3) the profile's (A, C, E), r^2 =
    A dx^2 + C dy^2 + 2 E dx dy; ``wform`` (B, 3) the window's, divided by
    r_outer^2 - r_inner^2, and ``t0`` = r_inner^2 over the same, so that the
    taper variable is t = wform(dx, dy) - t0; ``k`` = 1 / (2n), ``c`` = b /
    r_e^(1/n) and ``log_norm``: S = exp(log_norm - c (r^2)^k), 1 - W =
    (1 - cos(pi clamp(t, 0, 1))) / 2.
    """

    @staticmethod
    def _quadratic(dx, dy, form, shift=0.0):
        a, c, e = form.unbind(-1)
        out = torch.mul((2 * e[:, None] * dx)[:, None, :], dy[:, :, None])
        out += (a[:, None] * dx * dx - shift)[:, None, :]
        out += (c[:, None] * dy * dy)[:, :, None]
        return out

    @staticmethod
    def _quadratic_grads(p, dx, dy, form, factor):
        """Gradients (x0, y0, form) of sum(p * q) for q = the quadratic form of (dx, dy), times ``factor`` (B,)."""
        a, c, e = form.unbind(-1)
        py, px = p.sum(1), p.sum(2)  # (B, Gx) summed over rows, (B, Gy) over columns
        pxy = torch.bmm(torch.bmm(dy[:, None, :], p), dx[:, :, None])[:, 0, 0]
        sx, sy = (py * dx).sum(1), (px * dy).sum(1)
        g_form = torch.stack([(py * dx * dx).sum(1), (px * dy * dy).sum(1), 2 * pxy], -1) * factor[:, None]
        return -2 * factor * (a * sx + e * sy), -2 * factor * (c * sy + e * sx), g_form

    @staticmethod
    def forward(ctx, ux, uy, x0, y0, form, wform, t0, k, c, log_norm):
        dx, dy = ux[None, :] - x0[:, None], uy[None, :] - y0[:, None]  # (B, Gx), (B, Gy)
        r2 = _OuterProfile._quadratic(dx, dy, form).clamp_min_(1e-12)
        log_r2 = torch.log(r2)
        y = torch.mul(log_r2, k[:, None, None]).exp_()  # (r^2)^k = (r / r_e)^(1/n) r_e^(1/n)
        profile = torch.mul(y, -c[:, None, None]).add_(log_norm[:, None, None]).exp_()
        phase = _OuterProfile._quadratic(dx, dy, wform, t0).clamp_(0.0, 1.0).mul_(math.pi)
        outside = torch.cos(phase).mul_(-0.5).add_(0.5)
        s = profile * outside
        ctx.save_for_backward(dx, dy, form, wform, k, c, r2, log_r2, y, profile, phase.sin_(), s)
        return s

    @staticmethod
    def backward(ctx, grad):
        dx, dy, form, wform, k, c, r2, log_r2, y, profile, sin, s = ctx.saved_tensors
        gs = grad * s  # d/d log S
        g_log_norm = gs.sum((1, 2))
        gsy = gs.mul_(y)  # d log S / dc = -y
        g_c = -gsy.sum((1, 2))
        g_k = -c * (gsy * log_r2).sum((1, 2))  # d log S / dk = -c y log r^2
        gx, gy, g_form = _OuterProfile._quadratic_grads(gsy.div_(r2), dx, dy, form, -c * k)  # d log S / dr^2
        dtaper = grad * profile  # d(1 - W)/dt = pi sin(pi t) / 2, zero where t is clamped
        dtaper.mul_(sin)
        wx, wy, g_wform = _OuterProfile._quadratic_grads(dtaper, dx, dy, wform, torch.full_like(k, 0.5 * math.pi))
        return None, None, gx + wx, gy + wy, g_form, g_wform, None, g_k, g_c, g_log_norm


class _LocalProjection(torch.autograd.Function):
    """The polar nodes' flux on the L x L pixels around the centre, (B, L, L), with a hand-written backward pass.

    image[j, i] = sum_m f[m] Ky[m, j] Kx[m, i], where Kx[m, i] = (erf(a (e[i + 1]
    - cx[m])) - erf(a (e[i] - cx[m]))) / 2 is the PSF-convolved pixel box of
    pixel i (edges e, B x (L + 1)) seen from node m at cx, a = 1 / (sqrt(2)
    sigma). The backward pass reuses the erf arguments: dKx/dcx = -a / sqrt(pi)
    (g[i + 1] - g[i]) with g = exp(-arg^2), which autograd would build from
    several (B, M, L + 1) temporaries per step.

    Inputs: ``f`` (B, M) node fluxes, ``cx``, ``cy`` (B, M) node positions,
    ``edges_x``, ``edges_y`` (B, L + 1) pixel edges (constants), ``a``.
    """

    @staticmethod
    def forward(ctx, f, cx, cy, edges_x, edges_y, a):
        args, kernels = [], []
        for edges, c in ((edges_x, cx), (edges_y, cy)):
            arg = (edges[:, None, :] - c[:, :, None]).mul_(a)  # (B, M, L + 1)
            e = torch.erf(arg)
            args.append(arg)
            kernels.append(torch.sub(e[..., 1:], e[..., :-1]).mul_(0.5))  # (B, M, L)
        kx, ky = kernels
        ctx.a = a
        ctx.save_for_backward(f, kx, ky, *args)
        return (ky * f[..., None]).transpose(1, 2) @ kx  # (B, L, M) @ (B, M, L)

    @staticmethod
    def backward(ctx, grad):
        f, kx, ky, arg_x, arg_y = ctx.saved_tensors
        tx = ky @ grad  # (B, M, L): d image / d Kx without f
        ty = kx @ grad.transpose(1, 2)
        g_f = (tx * kx).sum(-1)
        scale = -ctx.a / math.sqrt(math.pi) * f
        g_c = []
        for t, arg in ((tx, arg_x), (ty, arg_y)):
            g = arg.square().neg_().exp_()
            g_c.append(scale * (t * torch.sub(g[..., 1:], g[..., :-1])).sum(-1))
        return g_f, g_c[0], g_c[1], None, None, None


def _outer_profile(ux, uy, x0, y0, form, wform, t0, k, c, log_norm) -> torch.Tensor:
    return _OuterProfile.apply(ux, uy, x0, y0, form, wform, t0, k, c, log_norm)


class _Renderer:
    """Sersic images (B, H, W) of physical parameters in pixel units, PSF-convolved and pixel-integrated.

    The surface brightness S is split by a smooth window W(rho) of an
    elliptical distance rho (pixels) to the galaxy centre, 1 inside
    ``r_inner`` and 0 outside ``r_outer``. The window has the galaxy's
    position angle and an axis ratio that follows the galaxy's q down to
    exp(-``window_eta``) (rounder windows keep the taper wide enough for the
    sub-pixel grid):

    - S W (the cusp) is integrated on a polar grid centred on the galaxy,
      sheared like the window: radii ``r_inner * t**3`` with Gauss-Legendre
      nodes in t (the substitution makes the cusp r^(1/n) smooth),
      Gauss-Legendre radii between ``r_inner`` and ``r_outer``, equally
      spaced angles;
    - S (1 - W) is integrated on a fixed grid of ``oversample`` x
      ``oversample`` sub-pixels per pixel, extended beyond the stamp by a
      margin of 4 PSF sigmas (light from outside the stamp that the PSF
      brings in).

    Each quadrature node is a point of flux, and its contribution to pixel
    p is the PSF convolved with the pixel box, K(p - u) =
    Kx(px - ux) Ky(py - uy) with Kx(d) = Phi((d + 1/2) / sigma) -
    Phi((d - 1/2) / sigma): separable, so an image is two matrix products.
    """

    def __init__(self, height: int, width: int, *, psf_sigma: float, oversample: int | None = None,
                 r_inner: float = 1.5,
                 r_outer: float = 3.0, window_eta: float = math.log(2.25), n_radial: tuple[int, int] = (10, 6),
                 n_angle: int = 40, device: torch.device | str = "cpu") -> None:
        if psf_sigma <= 0:
            raise ValueError("the PSF width must be positive")
        self.height, self.width, self.sigma = height, width, float(psf_sigma)
        self.r_inner, self.r_outer, self.window_eta = float(r_inner), float(r_outer), float(window_eta)
        kw = dict(dtype=_DTYPE, device=device)
        self.cx = torch.arange(width, **kw) - (width - 1) / 2  # pixel centres, GalSim's drawImage convention
        self.cy = torch.arange(height, **kw) - (height - 1) / 2
        oversample = oversample or _default_oversample(self.sigma)
        if oversample < 1:
            raise ValueError(f"oversample must be at least 1, got {oversample}")
        h = 1.0 / oversample
        margin = math.ceil(4 * self.sigma + 0.5)
        self.ux = (torch.arange((width + 2 * margin) * oversample, **kw) + 0.5) * h - (width / 2 + margin)
        self.uy = (torch.arange((height + 2 * margin) * oversample, **kw) + 0.5) * h - (height / 2 + margin)
        self.kx_grid = self.kernel(self.cx[:, None] - self.ux[None, :]) * h  # (W, Gx)
        self.ky_grid = self.kernel(self.cy[:, None] - self.uy[None, :]) * h  # (H, Gy)
        # polar nodes: r = r_inner t^3 on [0, r_inner], plain Gauss-Legendre on [r_inner, r_outer]
        t, wt = (torch.as_tensor(a, **kw) for a in np.polynomial.legendre.leggauss(n_radial[0]))
        t, wt = (t + 1) / 2, wt / 2
        r1, dr1 = self.r_inner * t**3, self.r_inner * 3 * t**2 * wt
        s, ws = (torch.as_tensor(a, **kw) for a in np.polynomial.legendre.leggauss(n_radial[1]))
        r2, dr2 = self.r_inner + (s + 1) / 2 * (self.r_outer - self.r_inner), ws / 2 * (self.r_outer - self.r_inner)
        r, dr = torch.cat([r1, r2]), torch.cat([dr1, dr2])
        theta = (torch.arange(n_angle, **kw) + 0.5) * (2 * math.pi / n_angle)
        self.px = (r[:, None] * torch.cos(theta)[None, :]).reshape(-1)  # (M,) unsheared offsets
        self.py = (r[:, None] * torch.sin(theta)[None, :]).reshape(-1)
        area = (r * dr)[:, None].expand(-1, n_angle).reshape(-1) * (2 * math.pi / n_angle)
        self.pw = area * self.window(self.px**2 + self.py**2)  # (M,) the shear keeps areas
        self.local = 2 * math.ceil(self.r_outer * math.exp(self.window_eta / 2) + 4 * self.sigma + 1) + 1

    def kernel(self, d: torch.Tensor) -> torch.Tensor:
        """The Gaussian PSF integrated over a pixel, at offset ``d`` (pixels) along one axis."""
        a = 1.0 / (math.sqrt(2.0) * self.sigma)
        return 0.5 * (torch.erf((d + 0.5) * a) - torch.erf((d - 0.5) * a))

    def window(self, rho2: torch.Tensor) -> torch.Tensor:
        """1 inside r_inner, 0 outside r_outer, a cosine taper in rho^2 between (C1)."""
        s = ((rho2 - self.r_inner**2) / (self.r_outer**2 - self.r_inner**2)).clamp(0.0, 1.0)
        return 0.5 * (1 + torch.cos(math.pi * s))

    @staticmethod
    def radius2(dx, dy, v1, v2) -> torch.Tensor:
        """Circularised radius^2 d^T exp(-eta M) d, M = [[cos 2b, sin 2b], [sin 2b, -cos 2b]], v = eta (cos 2b, sin 2b).

        exp(-eta M) = cosh(eta) I - sinh(eta) M: the major axis (along beta)
        is stretched by exp(eta / 2) = 1 / sqrt(q), the minor one shrunk by
        sqrt(q), so sqrt(ab) = r (GalSim's ``shear(q=, beta=)``).
        """
        cosh, sinhc = _sinhc_cosh(v1 * v1 + v2 * v2)
        return cosh * (dx * dx + dy * dy) - sinhc * (v1 * (dx * dx - dy * dy) + 2 * v2 * dx * dy)

    @classmethod
    def log_profile(cls, dx, dy, log_re, n, v1, v2, log_flux) -> torch.Tensor:
        """log surface brightness (flux per pixel^2) at offsets (dx, dy) from the centre; parameters broadcast.

        I(r) = flux b^(2n) / (2 pi n r_e^2 Gamma(2n)) exp(-b (r / r_e)^(1/n)), whose integral over the plane is flux.
        """
        r2 = cls.radius2(dx, dy, v1, v2).clamp_min(1e-12)
        b = sersic_b(n)
        return cls.log_norm(log_re, n, b, log_flux) - b * torch.exp((0.5 * torch.log(r2) - log_re) / n)

    @staticmethod
    def log_norm(log_re, n, b, log_flux) -> torch.Tensor:
        """log of the central surface brightness flux b^(2n) / (2 pi n r_e^2 Gamma(2n))."""
        return (log_flux + 2 * n * torch.log(b) - math.log(2 * math.pi) - torch.log(n) - 2 * log_re
                - torch.lgamma(2 * n))

    @staticmethod
    def quadratic_form(v1, v2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(A, C, E) with :meth:`radius2` = A dx^2 + C dy^2 + 2 E dx dy."""
        cosh, sinhc = _sinhc_cosh(v1 * v1 + v2 * v2)
        return cosh - sinhc * v1, cosh + sinhc * v1, -sinhc * v2

    def window_shear(self, v1, v2) -> tuple[torch.Tensor, torch.Tensor]:
        """The window's shear vector: the galaxy's, smoothly saturated at ``window_eta``."""
        scale = torch.rsqrt(1 + (v1 * v1 + v2 * v2) / self.window_eta**2)
        return v1 * scale, v2 * scale

    def __call__(self, x0, y0, log_re, n, v1, v2, log_flux) -> torch.Tensor:
        """Images (B, H, W) of parameters (B,) each: centre (pixels from the stamp centre), log r_e (pixels),
        n, shear vector v (eta (cos 2 beta, sin 2 beta), q = exp(-|v|)), log flux."""
        w1, w2 = self.window_shear(v1, v2)
        # S (1 - W) on the fixed sub-pixel grid: r^2 and the window's rho^2 as quadratic forms in (dx, dy)
        b = sersic_b(n)
        s = _outer_profile(self.ux, self.uy, x0, y0, torch.stack(self.quadratic_form(v1, v2), -1),
                           torch.stack(self.quadratic_form(w1, w2), -1) / (self.r_outer**2 - self.r_inner**2),
                           self.r_inner**2 / (self.r_outer**2 - self.r_inner**2), 0.5 / n, b * torch.exp(-log_re / n),
                           self.log_norm(log_re, n, b, log_flux))  # (B, Gy, Gx)
        outer = self.ky_grid @ s @ self.kx_grid.T  # (H, Gy) @ (B, Gy, Gx) @ (Gx, W) -> (B, H, W)
        # S W on the polar grid that moves (and shears) with the galaxy, projected onto the L x L pixels around it;
        # node offsets d = exp(eta' M' / 2) p = cosh(eta'/2) p + sinh(eta'/2) M' p
        cosh, sinhc = _sinhc_cosh((w1 * w1 + w2 * w2)[:, None] / 4)
        half = sinhc / 2
        ox = cosh * self.px + half * (w1[:, None] * self.px + w2[:, None] * self.py)  # (B, M)
        oy = cosh * self.py + half * (w2[:, None] * self.px - w1[:, None] * self.py)
        col = [p[:, None] for p in (log_re, n, v1, v2, log_flux)]
        f = torch.exp(self.log_profile(ox, oy, *col)) * self.pw  # (B, M)
        i0, edges_x = self._local_edges(x0, self.width)  # (B,), (B, L + 1)
        j0, edges_y = self._local_edges(y0, self.height)
        local = _LocalProjection.apply(f, x0[:, None] + ox, y0[:, None] + oy, edges_x, edges_y,
                                       1.0 / (math.sqrt(2.0) * self.sigma))  # (B, L, L)
        L = self.local
        rows = (j0 + L)[:, None, None] + torch.arange(L, device=i0.device)[None, :, None]
        cols = (i0 + L)[:, None, None] + torch.arange(L, device=i0.device)[None, None, :]
        batch = torch.arange(len(x0), device=i0.device)[:, None, None]
        padded = outer.new_zeros(len(x0), self.height + 2 * L, self.width + 2 * L)
        padded = padded.index_put((batch, rows, cols), local, accumulate=True)
        return outer + padded[:, L:L + self.height, L:L + self.width]

    def _local_edges(self, centre: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first index i0 (B,) and the edges (B, L + 1) of the L pixels along one axis that the polar nodes reach.

        Pixels farther than the window plus 4 PSF sigmas from the centre get
        nothing from the polar nodes (erf saturates), so only a window of
        L = ``self.local`` pixels around the centre is computed.
        """
        L = self.local
        index = torch.round(centre.detach() + (size - 1) / 2).long() - L // 2
        i0 = index.clamp(-L, size)  # a centre far outside the stamp: a window of zeros just outside it
        edges = (i0[:, None] + torch.arange(L + 1, device=i0.device)[None, :]).to(_DTYPE) - size / 2
        return i0, edges


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


def _arcsec(value: Any, name: str) -> float:
    """A length in arcsec from a float (arcsec) or an astropy angle Quantity."""
    if hasattr(value, "unit"):
        import astropy.units as u

        try:
            value = value.to_value(u.arcsec)
        except u.UnitConversionError:
            raise ValueError(f"{name} must be an angle, got unit {value.unit}") from None
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number of arcsec, got {value}")
    return value


def _as_single_band(images: Any) -> np.ndarray:
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.ndim == 4:
        if a.shape[1] != 1:
            raise ValueError(f"single-band images expected, got {a.shape[1]} bands (shape {a.shape})")
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"images must be (N, H, W) or (N, 1, H, W), got shape {a.shape}")
    return a.astype(np.float64)


def _border_noise(images: np.ndarray, valid: np.ndarray, *, width: int = 2) -> np.ndarray:
    """Noise of each image from its ``width``-pixel border, floored at 1e-3 of its peak.

    1.4826 MAD / sqrt(2) of the differences between neighbouring border
    pixels along the edge: the smooth wings of a galaxy that reach the
    border cancel in the differences and do not inflate the estimate.
    """
    out = np.full(len(images), np.nan)
    for i, (image, ok) in enumerate(zip(images, valid)):
        z = np.where(ok, image, np.nan)
        strips = [z[:width], z[-width:], z[:, :width].T, z[:, -width:].T]  # each (width, length), along the edge
        diffs = np.concatenate([(s[:, 1:] - s[:, :-1]).ravel() for s in strips])
        diffs = diffs[np.isfinite(diffs)]
        if diffs.size < 8:
            continue
        mad = 1.4826 * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2)
        out[i] = max(mad, 1e-3 * np.abs(image[ok]).max())
    return out


def _moments(image: np.ndarray, valid: np.ndarray, sigma: float, psf_sigma: float) -> tuple[float, ...]:
    """Starting values (x0, y0, r_e [pixels], n, q, beta, flux) from the image moments.

    Centroid and second moments of the pixels above 2 sigma; the PSF and
    pixel variance are subtracted from the second moments before q and
    beta; r_e is the elliptical radius (that q and beta) enclosing half the
    summed flux, the PSF's half-light radius subtracted in quadrature.
    """
    h, w = image.shape
    ys, xs = np.mgrid[:h, :w]
    xs, ys = xs - (w - 1) / 2, ys - (h - 1) / 2
    z = np.where(valid, image, 0.0)
    weight = np.where(valid & (z > 2 * sigma), z, 0.0)
    f_bright, f_all = weight.sum(), z.sum()
    if np.count_nonzero(weight) < 3 or f_bright <= 0:
        return 0.0, 0.0, 2.0, 2.0, 1.0, 0.0, max(f_all, sigma)
    xc, yc = (weight * xs).sum() / f_bright, (weight * ys).sum() / f_bright
    dx, dy = xs - xc, ys - yc
    var = psf_sigma**2 + 1 / 12
    mxx = (weight * dx * dx).sum() / f_bright - var
    myy = (weight * dy * dy).sum() / f_bright - var
    mxy = (weight * dx * dy).sum() / f_bright
    trace, diff = mxx + myy, math.hypot(mxx - myy, 2 * mxy)
    lam1, lam2 = max((trace + diff) / 2, 0.05), max((trace - diff) / 2, 0.0)
    q = float(np.clip(math.sqrt(max(lam2, 0.01 * lam1) / lam1), 0.1, 1.0))
    beta = 0.5 * math.atan2(2 * mxy, mxx - myy)
    flux = max(f_all, f_bright)
    c, s = math.cos(beta), math.sin(beta)
    xp, yp = dx * c + dy * s, -dx * s + dy * c
    r_ell = np.sqrt(q * xp**2 + yp**2 / q)[valid]
    order = np.argsort(r_ell)
    cumulative = np.cumsum(z[valid][order])
    k = min(int(np.searchsorted(cumulative, flux / 2)), len(order) - 1)
    r_obs = float(r_ell[order][k]) + 0.5
    r_e = math.sqrt(max(r_obs**2 - (1.1774 * psf_sigma) ** 2, 0.25))
    return float(xc), float(yc), r_e, 2.0, q, beta, float(flux)


class _Rendezvous:
    """Collects the objective calls of optimisers running in threads into one batched evaluation.

    Every worker thread runs its own ``scipy.optimize.minimize``; its
    objective hands the parameter vector here (:meth:`__call__`) and waits.
    The thread in :meth:`serve` (the caller's) waits until every active
    worker is waiting, evaluates them all in one call of
    ``evaluate(indices, P) -> (f, grad)`` and wakes them. Evaluating in one
    thread keeps torch's large temporary buffers in one allocator arena
    (with glibc, each thread that allocates them would keep its own copy).
    Two conditions on one lock: a submission wakes only the server, a batch
    of results wakes the workers once.
    """

    def __init__(self, evaluate: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                 workers: int) -> None:
        self._evaluate = evaluate
        lock = threading.Lock()
        self._to_server, self._to_workers = threading.Condition(lock), threading.Condition(lock)
        self._pending: dict[int, tuple[int, np.ndarray]] = {}
        self._results: dict[int, tuple[float, np.ndarray]] = {}
        self._active = workers
        self._error: BaseException | None = None
        self.batches = 0

    @property
    def error(self) -> BaseException | None:
        """The exception an evaluation raised, if any."""
        return self._error

    def __call__(self, worker: int, index: int, p: np.ndarray) -> tuple[float, np.ndarray]:
        """The value and gradient for image ``index`` at ``p`` (called by worker ``worker``)."""
        with self._to_workers:
            if self._error is None:
                self._pending[worker] = (index, np.array(p, dtype=np.float64))
                if len(self._pending) == self._active:
                    self._to_server.notify()
            while worker not in self._results and self._error is None:
                self._to_workers.wait()
            if self._error is not None:
                raise RuntimeError("the batched model evaluation failed") from self._error
            return self._results.pop(worker)

    def leave(self) -> None:
        """A worker has no more images to fit."""
        with self._to_server:
            self._active -= 1
            self._to_server.notify()

    def serve(self) -> None:
        """Evaluate batches until every worker has left (or an evaluation failed: see :attr:`error`)."""
        while True:
            with self._to_server:
                while self._active > 0 and (not self._pending or len(self._pending) < self._active):
                    self._to_server.wait()
                if self._active == 0:
                    return
                items = list(self._pending.items())
                self._pending.clear()
            try:
                f, g = self._evaluate(np.array([i for _, (i, _) in items]), np.stack([p for _, (_, p) in items]))
            except BaseException as exc:  # every waiting worker raises and leaves
                with self._to_workers:
                    self._error = exc
                    self._to_workers.notify_all()
                return
            with self._to_workers:
                self.batches += 1
                for k, (worker, _) in enumerate(items):
                    self._results[worker] = (float(f[k]), g[k])
                self._to_workers.notify_all()


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


def render_sersic(params: Any, *, image_size: int, pixel_scale: Any, psf_fwhm: Any,
                  oversample: int | None = None) -> np.ndarray:
    """Images (N, H, W) of the fit's model: Sersic profiles convolved with a Gaussian PSF, pixel-integrated.

    Parameters
    ----------
    params : array_like (N, 7) or (7,)
        x, y, r_half, n, q, beta, flux in the ``sersic`` source's units.
    image_size : int
        Stamp size in pixels (square).
    pixel_scale, psf_fwhm : float or Quantity
        Arcsec per pixel and the Gaussian PSF's FWHM (arcsec).
    oversample : int, optional
        Sub-pixels per pixel and axis away from the centre; by default the
        smallest number (at least 2) that keeps their spacing below 2/3 of
        the PSF sigma (3 for the 1 arcsec PSF on 0.792 arcsec pixels, 2 on
        0.396 arcsec pixels).
    """
    scale = _arcsec(pixel_scale, "pixel_scale")
    fwhm = _arcsec(psf_fwhm, "psf_fwhm")
    p = np.atleast_2d(np.asarray(params, dtype=np.float64))
    if p.shape[1] != 7:
        raise ValueError(f"params must be (N, 7), got shape {p.shape}")
    renderer = _Renderer(image_size, image_size, psf_sigma=fwhm * _FWHM_TO_SIGMA / scale, oversample=oversample)
    eta = -np.log(np.clip(p[:, 4], 1e-12, 1.0))
    cols = [p[:, 0] / scale, p[:, 1] / scale, np.log(p[:, 2] / scale), p[:, 3], eta * np.cos(2 * p[:, 5]),
            eta * np.sin(2 * p[:, 5]), np.log(p[:, 6])]
    with torch.no_grad():
        return renderer(*(torch.as_tensor(c, dtype=_DTYPE) for c in cols)).numpy()


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
    images). A model evaluation with its gradient costs about 2 ms per 32x32
    image on one CPU thread and a fit about 20 of them: 17 fits/s on one
    thread, 25 on two, measured in ``docs/fitting.md``.

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
    from galaug._progress import progress

    scale = _arcsec(pixel_scale, "pixel_scale")
    psf_sigma = _arcsec(psf_fwhm, "psf_fwhm") * _FWHM_TO_SIGMA / scale
    data = _as_single_band(images)
    n_images, height, width = data.shape
    if height != width:
        raise ValueError(f"square images expected, got {height}x{width}")
    if max_iter < 1 or batch_size < 1 or chunk_size < 1:
        raise ValueError("max_iter, batch_size and chunk_size must be at least 1")
    valid = np.isfinite(data)
    if noise_std is None:
        sigma = _border_noise(data, valid)
    else:
        sigma = np.broadcast_to(np.asarray(noise_std, dtype=np.float64), (n_images,)).copy()
        if not (np.isfinite(sigma).all() and (sigma > 0).all()):
            raise ValueError("noise_std must be positive and finite")
    n_valid = valid.sum(axis=(1, 2))
    fittable = (n_valid >= 16) & np.isfinite(sigma) & (sigma > 0)  # sigma 0: an image of zeros
    param = _Parametrisation(height)
    if init is not None:
        start = np.asarray(init, dtype=np.float64)
        if start.shape != (n_images, 7):
            raise ValueError(f"init must be ({n_images}, 7), got shape {start.shape}")
        p0 = param.unconstrained(start[:, 0] / scale, start[:, 1] / scale, start[:, 2] / scale, *start[:, 3:].T)
    else:
        moments = np.array([_moments(data[i], valid[i], sigma[i], psf_sigma) if fittable[i] else (0, 0, 2, 2, 1, 0, 1)
                            for i in range(n_images)], dtype=np.float64)
        p0 = param.unconstrained(*moments.T)

    renderer = _Renderer(height, width, psf_sigma=psf_sigma, oversample=oversample)
    target = torch.as_tensor(np.where(valid, data, 0.0), dtype=_DTYPE)
    weight = torch.as_tensor(valid / np.where(fittable, sigma, 1.0)[:, None, None] ** 2, dtype=_DTYPE)

    def chi2_and_model(index: np.ndarray, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model = renderer(*param.physical(p))
        idx = torch.as_tensor(index)
        return (weight[idx] * (target[idx] - model) ** 2).sum(dim=(1, 2)), model

    def evaluate(index: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, g = np.empty(len(index)), np.empty_like(P)
        with torch.enable_grad():
            for s in range(0, len(index), chunk_size):
                p = torch.tensor(P[s:s + chunk_size], dtype=_DTYPE, requires_grad=True)
                chi2, _ = chi2_and_model(index[s:s + chunk_size], p)
                (0.5 * chi2).sum().backward()
                f[s:s + chunk_size] = 0.5 * chi2.detach().numpy()
                g[s:s + chunk_size] = p.grad.numpy()
        bad = ~(np.isfinite(f) & np.isfinite(g).all(axis=1))
        f[bad], g[bad] = np.inf, 0.0  # the line search backs off
        return f, g

    todo = [int(i) for i in np.flatnonzero(fittable)]
    results: dict[int, scipy.optimize.OptimizeResult] = {}
    jobs: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in todo:
        jobs.put(i)
    workers = min(batch_size, len(todo))
    rendezvous = _Rendezvous(evaluate, workers)
    errors: list[BaseException] = []
    lock = threading.Lock()

    # scipy's line search warns when it gives up (the fit then reports no convergence); filters are
    # process-wide, so they are set here, around the worker threads, not in them
    with warnings.catch_warnings(), progress(total=len(todo), desc="fit sersic") as bar:
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"scipy\.optimize")

        def work(worker: int) -> None:
            try:
                with np.errstate(all="ignore"):
                    while True:
                        try:
                            i = jobs.get_nowait()
                        except queue.Empty:
                            return
                        res = scipy.optimize.minimize(lambda p, i=i: rendezvous(worker, i, p), p0[i], jac=True,
                                                      method="BFGS", options={"maxiter": max_iter, "gtol": gtol})
                        with lock:
                            results[i] = res
                            bar.update(1)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
            finally:
                rendezvous.leave()

        threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(workers)]
        for t in threads:
            t.start()
        rendezvous.serve()
        for t in threads:
            t.join()
    if rendezvous.error is not None:
        raise rendezvous.error
    if errors:
        raise errors[0]

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
            for s in range(0, len(index), chunk_size):
                sl = slice(s, s + chunk_size)
                p = torch.as_tensor(p_best[sl], dtype=_DTYPE)
                chi2, model = chi2_and_model(index[sl], p)
                chi2_red[index[sl]] = chi2.numpy() / np.maximum(n_valid[index[sl]] - 7, 1)
                snr[index[sl]] = torch.sqrt((weight[index[sl]] * model**2).sum(dim=(1, 2))).numpy()
                x0, y0, log_re, n, v1, v2, log_flux = (t.numpy() for t in param.physical(p))
                beta = np.mod(0.5 * np.arctan2(v2, v1), np.pi)
                beta[beta >= np.pi] = 0.0  # a tiny negative angle rounds up to pi
                params[index[sl]] = np.stack([x0 * scale, y0 * scale, np.exp(log_re) * scale, n,
                                              np.exp(-np.hypot(v1, v2)), beta, np.exp(log_flux)], axis=1)
    inside = (np.abs(params[:, 0] / scale) < width / 2) & (np.abs(params[:, 1] / scale) < height / 2)
    success = converged & ~at_bound & inside & (snr >= min_snr) & np.isfinite(chi2_red)
    return FitResult(params=params, chi2_reduced=chi2_red, success=success, converged=converged, at_bound=at_bound,
                     snr=snr, noise_std=sigma, n_iter=n_iter)
