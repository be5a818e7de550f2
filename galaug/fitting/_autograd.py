"""The two pieces of the Sersic model with hand-written backward passes (``torch.autograd.Function``).

Together they halve the cost of a model evaluation with its gradient;
``tests/test_fitting.py`` checks both against finite differences with
``gradcheck``. See ``docs/fitting.md``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["LocalProjection", "OuterProfile"]


class OuterProfile(torch.autograd.Function):
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
        r2 = OuterProfile._quadratic(dx, dy, form).clamp_min_(1e-12)
        log_r2 = torch.log(r2)
        y = torch.mul(log_r2, k[:, None, None]).exp_()  # (r^2)^k = (r / r_e)^(1/n) r_e^(1/n)
        profile = torch.mul(y, -c[:, None, None]).add_(log_norm[:, None, None]).exp_()
        phase = OuterProfile._quadratic(dx, dy, wform, t0).clamp_(0.0, 1.0).mul_(math.pi)
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
        gx, gy, g_form = OuterProfile._quadratic_grads(gsy.div_(r2), dx, dy, form, -c * k)  # d log S / dr^2
        dtaper = grad * profile  # d(1 - W)/dt = pi sin(pi t) / 2, zero where t is clamped
        dtaper.mul_(sin)
        wx, wy, g_wform = OuterProfile._quadratic_grads(dtaper, dx, dy, wform, torch.full_like(k, 0.5 * math.pi))
        return None, None, gx + wx, gy + wy, g_form, g_wform, None, g_k, g_c, g_log_norm


class LocalProjection(torch.autograd.Function):
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
