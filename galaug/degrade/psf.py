"""Point-spread functions: Gaussian, Moffat, or a kernel read from a FITS file.

A PSF is convolved with every band of every image as a linear ("same")
convolution: the image is zero-padded by at least the kernel's half-width
(:func:`padded_size`) before ``torch.fft.rfft2``, so no term wraps around
into the kept pixels, and the result is cropped back to ``H x W``. A
Gaussian, which is separable, is applied instead as two products with
banded matrices when that costs less (images up to about 128 pixels): the
same linear convolution with the same kernel, up to float rounding.

Kernels are sampled at pixel centres (the image is already pixelated, so
the pixel response is not applied a second time; GalSim calls this
``method="no_pixel"``) and normalised to unit sum, so the flux of an
object well inside the image is conserved. Analytic kernels extend to the
radius outside which a fraction :data:`FLUX_TAIL` of the flux lies, but
never beyond ``H - 1`` by ``W - 1`` pixels from the centre (farther values
cannot reach any output pixel). Before the FFT every kernel, a file's too,
is cut to the centred box outside which that fraction of its flux lies
(:func:`crop_to_flux`), which sets the transform's size: the image size
plus that half-size, rounded up to a fast FFT length.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import torch

from galaug.degrade._common import check_images, check_per_band, per_band
from galaug.degrade.units import check_lengths
from galaug.errors import ConfigError
from galaug.kinds import Degradation

__all__ = [
    "FLUX_TAIL",
    "GaussianPSF",
    "MoffatPSF",
    "KernelPSF",
    "band_matrices",
    "crop_to_flux",
    "fast_fft_size",
    "fft_convolve",
    "load_kernel",
    "padded_size",
]

#: Analytic kernels are cut where the flux outside the radius is this fraction of the total.
FLUX_TAIL = 1e-6
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def fast_fft_size(n: int) -> int:
    """The smallest ``2**a``, ``3 * 2**a`` or ``5 * 2**a`` (``a >= 1``) that is at least ``n``.

    Transforms of these lengths are the fastest on CPUs (MKL, pocketfft) and
    GPUs alike; other 5-smooth lengths such as 90 were measured slower than 96.
    """
    best, power = 2 * max(1, int(n)), 2
    while power < best:
        for factor in (1, 3, 5):
            if power * factor >= n:
                best = min(best, power * factor)
        power *= 2
    return best


def padded_size(n: int, kernel: int) -> int:
    """FFT length for a linear convolution of ``n`` pixels cropped back to ``n`` (kernel centre ``kernel // 2``).

    Output pixels ``[c, c + n)`` of the full convolution read input pixels
    ``-r`` to ``n + c - 1`` (``c = kernel // 2``, ``r = kernel - 1 - c``), so
    a length of ``n + max(c, r)`` keeps every wrapped term in the zero padding.
    """
    c = kernel // 2
    return fast_fft_size(n + max(c, kernel - 1 - c))


def crop_to_flux(kernels: torch.Tensor, tail: float = FLUX_TAIL) -> torch.Tensor:
    """``kernels`` (C, h, w), centred at ``(h // 2, w // 2)``, cut to the smallest centred box outside which
    at most ``tail`` of each kernel's flux lies, and normalised again to unit sum.

    The FFT of a linear convolution needs padding by the kernel's half-size
    (:func:`padded_size`), so cutting a PSF's faint wings sets a smaller
    transform: a Moffat of FWHM 2 px and beta 3.5 on 64 px images needs 96
    points instead of 128. What is cut changes no pixel by more than
    ``tail`` of the image's largest value.
    """
    c, kh, kw = kernels.shape
    cy, cx = kh // 2, kw // 2
    total = kernels.abs().sum(dim=(-2, -1))
    radius = max(cy, cx, kh - 1 - cy, kw - 1 - cx)
    for half in range(radius + 1):
        y0, y1 = max(0, cy - half), min(kh, cy + half + 1)
        x0, x1 = max(0, cx - half), min(kw, cx + half + 1)
        inside = kernels[:, y0:y1, x0:x1].abs().sum(dim=(-2, -1))
        if bool(((total - inside) <= tail * total).all()):
            cut = kernels[:, y0:y1, x0:x1]
            top, left = cy - y0, cx - x0
            if top != y1 - 1 - cy or left != x1 - 1 - cx:  # keep the centre at (h // 2, w // 2)
                hy, hx = max(top, y1 - 1 - cy), max(left, x1 - 1 - cx)
                padded = cut.new_zeros((c, 2 * hy + 1, 2 * hx + 1))
                padded[:, hy - top:hy - top + cut.shape[1], hx - left:hx - left + cut.shape[2]] = cut
                cut = padded
            return cut / cut.sum(dim=(-2, -1), keepdim=True)
    return kernels


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


#: On the CPU the batch is transformed in pieces of about this many bytes of spectrum (cache-sized).
_CPU_CHUNK_BYTES = 2**21


def fft_convolve(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Linear convolution of each band with its kernel, cropped to the input size.

    Parameters
    ----------
    images : torch.Tensor
        (B, C, H, W), float.
    kernels : torch.Tensor
        (C, h, w) on the same device; the centre of kernel ``c`` is pixel
        ``(h // 2, w // 2)``.

    Returns
    -------
    torch.Tensor
        (B, C, H, W) in the dtype of ``images``.
    """
    _, _, height, width = images.shape
    kh, kw = kernels.shape[-2:]
    size = (padded_size(height, kh), padded_size(width, kw))
    spectrum = torch.fft.rfft2(kernels.to(_compute_dtype(images.dtype)), s=size)
    return _convolve(images, spectrum, size, (kh // 2, kw // 2))


def _convolve(images: torch.Tensor, spectrum: torch.Tensor, size: tuple[int, int],
              centre: tuple[int, int]) -> torch.Tensor:
    batch, bands, height, width = images.shape
    cy, cx = centre
    out = torch.empty_like(images)
    step = batch
    if images.device.type == "cpu":
        step = max(1, _CPU_CHUNK_BYTES // (bands * spectrum.shape[-1] * spectrum.shape[-2] * spectrum.element_size()))
    for start in range(0, batch, step):
        x = images[start:start + step].to(spectrum.real.dtype)
        full = torch.fft.irfft2(torch.fft.rfft2(x, s=size).mul_(spectrum), s=size)
        # pixel (y, x) of the output is pixel (y + cy, x + cx) of the full convolution
        out[start:start + step] = full[..., cy:cy + height, cx:cx + width]
    return out


def band_matrices(kernels: torch.Tensor, n: int) -> torch.Tensor:
    """(C, n, n) matrices ``M`` with ``M @ x`` the linear "same" convolution of ``x`` with 1-d ``kernels``.

    ``kernels`` is (C, k) with its centre at ``k // 2``: ``M[c, i, j] =
    kernels[c, i - j + k // 2]`` where that index exists, else 0 (the
    image is zero outside, as with the FFT).
    """
    length = kernels.shape[-1]
    index = torch.arange(n, device=kernels.device)
    offset = index[:, None] - index[None, :] + length // 2  # (n, n)
    inside = (offset >= 0) & (offset < length)
    return torch.where(inside, kernels[:, offset.clamp(0, length - 1)], kernels.new_zeros(()))


def _separable(images: torch.Tensor, my: torch.Tensor, mx: torch.Tensor) -> torch.Tensor:
    """``out[b, c] = my[c] @ images[b, c] @ mx[c].T``, one band at a time (each a pair of large GEMMs)."""
    x = images.to(my.dtype)
    out = torch.empty_like(x)
    for c in range(x.shape[1]):
        out[:, c] = my[c] @ (x[:, c] @ mx[c].T)
    return out.to(images.dtype)


def _separable_is_cheaper(height: int, width: int, size: tuple[int, int]) -> bool:
    """Two dense (H x H) and (W x W) products against an FFT of ``size``, per image plane.

    An FFT length-point costs about 15 multiply-adds of a matrix product
    (measured with both on one CPU core, 64 x 64 images), so matrices win
    up to about 128 x 128 pixels.
    """
    points = size[0] * size[1]
    return height * width * (height + width) < 15 * points * math.log2(points)


class _KernelPSF(Degradation):
    """What the PSFs share: kernels built per image size, cached per device as spectra or matrices."""

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self._cache: dict[tuple, tuple] = {}

    def kernels(self, n_bands: int, height: int, width: int) -> torch.Tensor:
        """The (C, h, w) float64 CPU kernels, each summing to 1, for images of this shape."""
        raise NotImplementedError

    def factors(self, n_bands: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(C, h) and (C, w) float64 1-d kernels whose outer products are :meth:`kernels`, if separable."""
        return None

    def _prepare(self, n_bands: int, height: int, width: int, device: torch.device, dtype: torch.dtype) -> tuple:
        factors = self.factors(n_bands, height, width)
        if factors is not None:
            rows, columns = factors
            size = (padded_size(height, rows.shape[-1]), padded_size(width, columns.shape[-1]))
            if _separable_is_cheaper(height, width, size):
                my = band_matrices(rows.to(device, dtype), height)
                mx = band_matrices(columns.to(device, dtype), width)
                return ("separable", my, mx)
        # the transform is sized by where the kernel's flux ends, not by the box it was sampled in
        kernels = crop_to_flux(self.kernels(n_bands, height, width))
        kh, kw = kernels.shape[-2:]
        size = (padded_size(height, kh), padded_size(width, kw))
        spectrum = torch.fft.rfft2(kernels.to(device=device, dtype=dtype), s=size)
        return ("fft", spectrum, size, (kh // 2, kw // 2))

    def apply(self, images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        check_images(images)
        _, n_bands, height, width = images.shape
        key = (n_bands, height, width, images.device, _compute_dtype(images.dtype))
        if key not in self._cache:
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self._prepare(*key)
        method, *prepared = self._cache[key]
        if method == "separable":
            return _separable(images, *prepared)
        return _convolve(images, *prepared)

    def propagate_variance(self, variance: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The input's variance convolved with the squared kernel (pixels taken as independent); infinite
        (unknown) within the kernel's box around a pixel of unknown variance."""
        _, n_bands, height, width = variance.shape
        kernels = crop_to_flux(self.kernels(n_bands, height, width)).to(variance.device)
        unknown = ~torch.isfinite(variance)
        known = torch.where(unknown, torch.zeros_like(variance), variance).to(torch.float64)
        out = fft_convolve(known, kernels * kernels).clamp_(min=0)  # the FFT's round-off may dip below 0
        kh, kw = kernels.shape[-2:]  # odd: crop_to_flux centres them
        reach = torch.nn.functional.max_pool2d(unknown.to(torch.float64), (kh, kw), stride=1,
                                               padding=(kh // 2, kw // 2)) if unknown.any() else None
        if reach is not None:
            out = torch.where(reach > 0, math.inf, out)
        return out.to(variance.dtype)


def _half_sizes(reach: float, height: int, width: int) -> tuple[int, int]:
    """Half-sizes of a kernel reaching ``reach`` pixels, capped at ``H - 1`` and ``W - 1``."""
    hy = height - 1 if not reach < height - 1 else math.ceil(reach)
    hx = width - 1 if not reach < width - 1 else math.ceil(reach)
    return hy, hx


def _radial_kernels(profile, radii: list[float], height: int, width: int) -> torch.Tensor:
    """Sample ``profile(r2, band)`` at pixel centres out to ``max(radii)`` (capped), normalised."""
    hy, hx = _half_sizes(max(radii), height, width)
    y = torch.arange(-hy, hy + 1, dtype=torch.float64)[:, None]
    x = torch.arange(-hx, hx + 1, dtype=torch.float64)[None, :]
    r2 = y * y + x * x
    kernels = torch.stack([profile(r2, c) for c in range(len(radii))])
    return kernels / kernels.sum(dim=(-2, -1), keepdim=True)


@dataclasses.dataclass
class GaussianPSFConfig:
    """Width of a Gaussian PSF: give ``sigma`` or ``fwhm``, one length or one per band.

    A length is pixels (``2``, ``"2px"``) or an angle (``"0.8arcsec"``,
    ``0.8 * u.arcsec``) that :meth:`galaug.degrade.Pipeline.in_pixels`
    converts with the images' pixel scale (:mod:`galaug.degrade.units`).
    """

    sigma: float | str | tuple[float | str, ...] | None = None
    fwhm: float | str | tuple[float | str, ...] | None = None

    def __post_init__(self) -> None:
        if (self.sigma is None) == (self.fwhm is None):
            raise ValueError("give exactly one of sigma or fwhm (pixels, or an angle like 0.8arcsec)")
        self.sigma = check_lengths("sigma", self.sigma, required=False)
        self.fwhm = check_lengths("fwhm", self.fwhm, required=False)


class GaussianPSF(_KernelPSF):
    """Gaussian PSF, ``sigma`` or ``fwhm`` in pixels or as an angle (one per band allowed).

    Applied by FFT, or, where it costs less (images up to about 128 x 128
    pixels), as the same separable convolution by two banded matrix products.
    """

    name = "psf-gaussian"
    Config = GaussianPSFConfig
    lengths = ("sigma", "fwhm")

    def sigmas(self, n_bands: int) -> list[float]:
        """The standard deviation in pixels of each band's Gaussian."""
        if self.config.sigma is not None:
            return per_band("sigma", self.config.sigma, n_bands)
        return [f / _FWHM_PER_SIGMA for f in per_band("fwhm", self.config.fwhm, n_bands)]

    def _radii(self, sigmas: list[float]) -> list[float]:
        # the flux of a 2-d Gaussian outside radius r is exp(-r^2 / (2 sigma^2))
        return [s * math.sqrt(-2.0 * math.log(FLUX_TAIL)) for s in sigmas]

    def kernels(self, n_bands: int, height: int, width: int) -> torch.Tensor:
        sigmas = self.sigmas(n_bands)
        return _radial_kernels(lambda r2, c: torch.exp(-0.5 * (r2 / sigmas[c]) / sigmas[c]),
                               self._radii(sigmas), height, width)

    def factors(self, n_bands: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        # exp(-(x^2 + y^2) / 2 sigma^2) = g(x) g(y) on the same box as kernels(), so the outer
        # product of the normalised 1-d kernels is the normalised 2-d kernel
        sigmas = self.sigmas(n_bands)
        hy, hx = _half_sizes(max(self._radii(sigmas)), height, width)

        def one_d(half: int) -> torch.Tensor:
            t = torch.arange(-half, half + 1, dtype=torch.float64)
            g = torch.stack([torch.exp(-0.5 * (t * t / s) / s) for s in sigmas])
            return g / g.sum(dim=-1, keepdim=True)

        return one_d(hy), one_d(hx)


@dataclasses.dataclass
class MoffatPSFConfig:
    """A Moffat PSF: ``beta`` (> 1) and ``fwhm`` (pixels, or an angle as in :class:`GaussianPSFConfig`),
    each one value or one per band."""

    beta: float | tuple[float, ...] | None = None
    fwhm: float | str | tuple[float | str, ...] | None = None

    def __post_init__(self) -> None:
        self.beta = check_per_band("beta", self.beta, minimum=1.0)
        self.fwhm = check_lengths("fwhm", self.fwhm)


class MoffatPSF(_KernelPSF):
    """Moffat PSF ``(1 + (r/alpha)^2)^-beta``, ``beta``, and ``fwhm`` in pixels or as an angle (per band allowed)."""

    name = "psf-moffat"
    Config = MoffatPSFConfig
    lengths = ("fwhm",)

    def kernels(self, n_bands: int, height: int, width: int) -> torch.Tensor:
        betas = per_band("beta", self.config.beta, n_bands)
        fwhms = per_band("fwhm", self.config.fwhm, n_bands)
        # fwhm = 2 alpha sqrt(2^(1/beta) - 1), as in GalSim
        alphas = [f / (2.0 * math.sqrt(math.expm1(math.log(2.0) / b))) for b, f in zip(betas, fwhms)]
        radii = []
        for alpha, beta in zip(alphas, betas):
            # flux outside r is (1 + r^2/alpha^2)^(1 - beta)
            log_term = math.log(FLUX_TAIL) / (1.0 - beta)
            radii.append(math.inf if log_term > 700 else alpha * math.sqrt(math.expm1(log_term)))
        return _radial_kernels(lambda r2, c: torch.exp(-betas[c] * torch.log1p((r2 / alphas[c]) / alphas[c])),
                               radii, height, width)


@dataclasses.dataclass
class KernelPSFConfig:
    """A PSF image in a FITS file: 2-d (every band) or 3-d (C, h, w), one kernel per band."""

    file: Path | None = None

    def __post_init__(self) -> None:
        if self.file is None or str(self.file) == "":
            raise ValueError("file is required (a FITS image of the PSF)")
        self.file = Path(self.file)


def load_kernel(path: Path) -> torch.Tensor:
    """The kernels of a FITS file as (K, h, w) float64, each normalised to unit sum.

    The first HDU with data is read. Raises :class:`ConfigError` (message
    starting with ``file``) when the file is missing, unreadable, not 2-d
    or 3-d, not finite, or a plane does not have a positive sum.
    """
    import numpy as np
    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    where = f"file {str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist" if not path.exists() else f"{where} is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, memmap=False) as hdul:
                data = next((h.data for h in hdul if getattr(h, "data", None) is not None and h.data.ndim), None)
                data = None if data is None else np.array(data, dtype=np.float64)
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise ConfigError(f"{where} cannot be read as FITS ({type(exc).__name__}: {exc})") from None
    if data is None:
        raise ConfigError(f"{where} has no image data")
    if data.ndim not in (2, 3):
        raise ConfigError(f"{where} holds a {data.ndim}-d array; a PSF kernel must be 2-d (h, w) or 3-d (C, h, w)")
    if not np.isfinite(data).all():
        raise ConfigError(f"{where} contains NaN or infinite values")
    kernels = torch.from_numpy(data.reshape(-1, *data.shape[-2:]))
    sums = kernels.sum(dim=(-2, -1))
    if (sums <= 0).any():
        plane = int(torch.nonzero(sums <= 0)[0, 0])
        raise ConfigError(f"{where}: kernel plane {plane} sums to {float(sums[plane]):g}; a PSF needs a positive sum")
    return kernels / sums[:, None, None]


class KernelPSF(_KernelPSF):
    """PSF read from a FITS file (2-d for all bands, or (C, h, w)), normalised to unit sum.

    The kernel's centre is pixel ``(h // 2, w // 2)`` (0-based), the
    centre of an odd-sized kernel and numpy's ``fftshift`` convention for
    an even size.
    """

    name = "psf-kernel"
    Config = KernelPSFConfig

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.kernel = load_kernel(self.config.file)

    def kernels(self, n_bands: int, height: int, width: int) -> torch.Tensor:
        planes, kh, kw = self.kernel.shape
        if planes not in (1, n_bands):
            raise ConfigError(
                f"file {str(self.config.file)!r} has {planes} kernel planes but the images have {n_bands} bands"
            )
        # entries farther than (H - 1, W - 1) from the centre cannot reach any output pixel
        cy, cx = kh // 2, kw // 2
        y0, x0 = max(0, cy - (height - 1)), max(0, cx - (width - 1))
        kernel = self.kernel[:, y0:cy + height, x0:cx + width]
        # keep the centre at (h // 2, w // 2) of the cropped kernel
        top, left = cy - y0, cx - x0
        bottom, right = kernel.shape[1] - 1 - top, kernel.shape[2] - 1 - left
        if top != bottom or left != right:
            hy, hx = max(top, bottom), max(left, right)
            padded = kernel.new_zeros((kernel.shape[0], 2 * hy + 1, 2 * hx + 1))
            padded[:, hy - top:hy + bottom + 1, hx - left:hx + right + 1] = kernel
            kernel = padded
        return kernel.expand(n_bands, -1, -1).contiguous()
