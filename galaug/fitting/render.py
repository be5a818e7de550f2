"""The Sersic model of the fit: analytic profiles in torch (float64), PSF-convolved and pixel-integrated.

Conventions are those of :mod:`galaug.sources.sersic` and GalSim's
``drawImage``: x to the right (array column), y up (array row), the
profile centre at ``(x, y)`` arcsec from the stamp centre (between the two
central pixels for even sizes), ``r_half`` the circularised half-light
radius sqrt(a b), ``q = b / a``, ``beta`` the angle of the major axis from
+x, counter-clockwise, ``flux`` the total flux of the untruncated profile.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from galaug.fitting._autograd import LocalProjection, OuterProfile
from galaug.fitting._inputs import arcsec

__all__ = ["render_sersic", "sersic_b"]

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
        s = OuterProfile.apply(self.ux, self.uy, x0, y0, torch.stack(self.quadratic_form(v1, v2), -1),
                               torch.stack(self.quadratic_form(w1, w2), -1) / (self.r_outer**2 - self.r_inner**2),
                               self.r_inner**2 / (self.r_outer**2 - self.r_inner**2), 0.5 / n,
                               b * torch.exp(-log_re / n), self.log_norm(log_re, n, b, log_flux))  # (B, Gy, Gx)
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
        local = LocalProjection.apply(f, x0[:, None] + ox, y0[:, None] + oy, edges_x, edges_y,
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
    scale = arcsec(pixel_scale, "pixel_scale")
    fwhm = arcsec(psf_fwhm, "psf_fwhm")
    p = np.atleast_2d(np.asarray(params, dtype=np.float64))
    if p.shape[1] != 7:
        raise ValueError(f"params must be (N, 7), got shape {p.shape}")
    renderer = _Renderer(image_size, image_size, psf_sigma=fwhm * _FWHM_TO_SIGMA / scale, oversample=oversample)
    eta = -np.log(np.clip(p[:, 4], 1e-12, 1.0))
    cols = [p[:, 0] / scale, p[:, 1] / scale, np.log(p[:, 2] / scale), p[:, 3], eta * np.cos(2 * p[:, 5]),
            eta * np.sin(2 * p[:, 5]), np.log(p[:, 6])]
    with torch.no_grad():
        return renderer(*(torch.as_tensor(c, dtype=_DTYPE) for c in cols)).numpy()
