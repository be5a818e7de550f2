"""Degradations: PSFs against GalSim, noise statistics, resampling, seeds, pipeline specs, ``galaug degrade``."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys

import astropy.units as u
import galsim
import numpy as np
import pytest
import torch
from astropy.io import fits
from hypothesis import given, settings, strategies as st

from galaug import open_dataset
from galaug.degrade import derive_seeds, parse_pipeline
from galaug.degrade.noise import CCDNoise, GaussianNoise, PoissonNoise
from galaug.degrade.psf import GaussianPSF, KernelPSF, MoffatPSF, _separable_is_cheaper, crop_to_flux, fft_convolve
from conftest import galaxy_images
from galaug.degrade.resample import Resample
from galaug.errors import ConfigError
from galaug.kinds import Degradation
from galaug.pluginmanager import PluginManager

from test_cli import assert_user_error

#: Our convolution of a GalSim-drawn galaxy against GalSim's own convolution of the
#: profiles (drawImage with the pixel): largest difference and rms difference, as a fraction
#: of the peak. The residual sits on the galaxy's central pixel, where the pixelated image
#: cannot hold the cusp of the profile exactly.
GALSIM_MAX_TOL = 5e-3
GALSIM_RMS_TOL = 3e-4


@pytest.fixture(scope="module")
def registry():
    return PluginManager(autoload=False, blocked=()).registry


def parse(spec, registry):
    return parse_pipeline(spec, registry=registry)


def blob(size=32, *, sigma=2.0, bands=1, flux=1000.0, centre=None, dtype=torch.float64):
    """A round Gaussian blob (B=1), fully inside the image."""
    c = (size - 1) / 2 if centre is None else centre
    y, x = torch.meshgrid(torch.arange(size, dtype=dtype), torch.arange(size, dtype=dtype), indexing="ij")
    image = torch.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * sigma**2))
    image = flux * image / image.sum()
    return image.expand(1, bands, size, size).clone()


def seeds(n, start=0):
    return torch.arange(start, start + n, dtype=torch.int64)


# -- PSFs -----------------------------------------------------------------------------

@pytest.mark.parametrize("psf", [
    GaussianPSF(GaussianPSF.Config(sigma=2.0)),
    GaussianPSF(GaussianPSF.Config(fwhm=[1.5, 2.5, 3.5])),
    MoffatPSF(MoffatPSF.Config(beta=3.5, fwhm=2.5)),
], ids=["gaussian", "gaussian-per-band", "moffat"])
def test_psf_conserves_the_flux_of_a_centred_object(psf):
    image = blob(48, bands=3)
    out = psf.apply(image, seeds(1))
    assert out.shape == image.shape and out.dtype == image.dtype
    torch.testing.assert_close(out.sum(dim=(-2, -1)), image.sum(dim=(-2, -1)), rtol=2e-5, atol=0)
    assert out.max() < image.max()  # it did blur


@pytest.mark.parametrize("galaxy", [
    galsim.Exponential(half_light_radius=3.0, flux=1000).shear(q=0.6, beta=0.5 * galsim.radians),
    galsim.Sersic(n=1.5, half_light_radius=3.0, flux=1000).shear(q=0.7, beta=1.0 * galsim.radians),
], ids=["exponential", "sersic"])
@pytest.mark.parametrize(("ours", "theirs"), [
    (GaussianPSF(GaussianPSF.Config(sigma=2.0)), galsim.Gaussian(sigma=2.0)),
    (GaussianPSF(GaussianPSF.Config(fwhm=3.0)), galsim.Gaussian(fwhm=3.0)),
    (MoffatPSF(MoffatPSF.Config(beta=3.5, fwhm=2.5)), galsim.Moffat(beta=3.5, fwhm=2.5)),
    (MoffatPSF(MoffatPSF.Config(beta=2.5, fwhm=3.0)), galsim.Moffat(beta=2.5, fwhm=3.0)),
], ids=["gaussian-sigma", "gaussian-fwhm", "moffat-3.5", "moffat-2.5"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_psf_matches_galsim(galaxy, ours, theirs, dtype):
    n = 48
    image = galaxy.drawImage(nx=n, ny=n, scale=1.0).array
    reference = galsim.Convolve(galaxy, theirs).drawImage(nx=n, ny=n, scale=1.0).array
    out = ours.apply(torch.tensor(image, dtype=dtype)[None, None], seeds(1))[0, 0].double().numpy()
    peak = reference.max()
    assert np.abs(out - reference).max() < GALSIM_MAX_TOL * peak
    assert np.sqrt(np.mean((out - reference) ** 2)) < GALSIM_RMS_TOL * peak
    assert out.sum() == pytest.approx(reference.sum(), rel=2e-4)


def test_psf_convolution_is_linear_not_circular():
    image = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    image[0, 0, 0, 0] = 1.0  # a point source in a corner
    out = MoffatPSF(MoffatPSF.Config(beta=2.5, fwhm=4.0)).apply(image, seeds(1))[0, 0]
    assert out[0, 0] > 0.01
    assert out[-8:, -8:].abs().max() < 1e-4 * out[0, 0]  # nothing wrapped to the far corner
    assert out[-1, -1] < out[-8, -8] and out.min() > -1e-12


@pytest.mark.parametrize("beta", [2.5, 3.5, 4.765])
def test_the_fft_is_sized_by_where_the_kernel_flux_ends_and_stays_within_1e5_of_the_direct_convolution(beta):
    from scipy.signal import convolve

    psf = MoffatPSF(MoffatPSF.Config(beta=beta, fwhm=2.0))
    images = torch.from_numpy(galaxy_images(3, bands=2, size=64)).double()
    out = psf.apply(images, seeds(3))
    full = psf.kernels(2, 64, 64).numpy()  # sampled out to the image size: the exact linear convolution
    for b in range(3):
        for c in range(2):
            direct = convolve(images[b, c].numpy(), full[c], mode="same", method="direct")
            assert np.abs(out[b, c].numpy() - direct).max() <= 1e-5 * np.abs(direct).max()
    _, spectrum, size, _ = psf._cache[next(iter(psf._cache))]
    expected = {2.5: 128, 3.5: 96, 4.765: 80}[beta]  # 64 + the half-size holding all but 1e-6 of the flux
    assert size == (expected, expected)
    kernels = crop_to_flux(torch.from_numpy(full))
    assert kernels.shape[-1] < full.shape[-1] and (kernels.shape[-1] - 1) // 2 <= size[0] - 64
    assert kernels.sum(dim=(-2, -1)).sub(1).abs().max() < 1e-12


def test_psf_kernels_are_sampled_at_pixel_centres_and_normalised():
    kernel = GaussianPSF(GaussianPSF.Config(sigma=1.5)).kernels(1, 32, 32)[0]
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    c = kernel.shape[0] // 2
    assert kernel[c, c + 1] / kernel[c, c] == pytest.approx(np.exp(-0.5 / 1.5**2), rel=1e-12)
    galsim_moffat = galsim.Moffat(beta=3.0, fwhm=2.0)
    ours = MoffatPSF(MoffatPSF.Config(beta=3.0, fwhm=2.0)).kernels(1, 32, 32)[0]
    c = ours.shape[0] // 2
    ratio = galsim_moffat.xValue(galsim.PositionD(2, 1)) / galsim_moffat.xValue(galsim.PositionD(0, 0))
    assert ours[c + 1, c + 2] / ours[c, c] == pytest.approx(ratio, rel=1e-12)


def test_gaussian_by_matrices_is_the_fft_convolution_with_the_same_kernel():
    psf = GaussianPSF(GaussianPSF.Config(sigma=[1.0, 2.5]))
    image = torch.rand(3, 2, 40, 36, dtype=torch.float64)
    kernels = psf.kernels(2, 40, 36)
    rows, columns = psf.factors(2, 40, 36)
    torch.testing.assert_close(rows[:, :, None] * columns[:, None, :], kernels)
    torch.testing.assert_close(psf.apply(image, seeds(3)), fft_convolve(image, kernels))
    assert _separable_is_cheaper(64, 64, (80, 80)) and not _separable_is_cheaper(512, 512, (640, 640))


def test_per_band_psf_uses_each_band_its_own_width():
    image = blob(32, bands=3)
    out = GaussianPSF(GaussianPSF.Config(sigma=[1.0, 2.0, 3.0])).apply(image, seeds(1))
    for band, sigma in enumerate([1.0, 2.0, 3.0]):
        alone = GaussianPSF(GaussianPSF.Config(sigma=sigma)).apply(image[:, band:band + 1], seeds(1))
        torch.testing.assert_close(out[:, band:band + 1], alone)


def test_per_band_list_of_the_wrong_length_names_both_counts(registry):
    pipeline = parse("psf:moffat(beta=3.5, fwhm=[2, 2.2])", registry)
    with pytest.raises(ConfigError, match="fwhm has 2 values but the images have 3 bands"):
        pipeline.apply(blob(16, bands=3), 0)
    with pytest.raises(ConfigError, match="std has 4 values but the images have 1 bands"):
        GaussianNoise(GaussianNoise.Config(std=[1, 2, 3, 4])).apply(blob(8), seeds(1))


def _write_fits(path, data):
    fits.PrimaryHDU(data=np.asarray(data)).writeto(path)
    return path


def test_kernel_psf_from_fits_matches_the_analytic_psf(tmp_path):
    gaussians = [GaussianPSF(GaussianPSF.Config(sigma=s)) for s in (1.0, 2.0)]
    small, large = (g.kernels(1, 24, 24)[0].numpy() for g in gaussians)  # 13 x 13 and 23 x 23
    planes = [7.0 * np.pad(small, (len(large) - len(small)) // 2), 7.0 * large]  # not normalised
    image = blob(24, bands=2)
    shared = KernelPSF(KernelPSF.Config(file=_write_fits(tmp_path / "k2.fits", planes[1])))
    # the file's kernel is cut where all but 1e-6 of its flux lies (crop_to_flux): within 1e-5 of the peak
    expected = gaussians[1].apply(image, seeds(1))
    torch.testing.assert_close(shared.apply(image, seeds(1)), expected, rtol=0, atol=1e-5 * expected.abs().max())
    per_band = KernelPSF(KernelPSF.Config(file=_write_fits(tmp_path / "k3.fits", np.stack(planes))))
    expected = torch.cat([g.apply(image[:, i:i + 1], seeds(1)) for i, g in enumerate(gaussians)], dim=1)
    torch.testing.assert_close(per_band.apply(image, seeds(1)), expected, rtol=0, atol=1e-5 * expected.abs().max())
    with pytest.raises(ConfigError, match="2 kernel planes but the images have 3 bands"):
        per_band.apply(blob(24, bands=3), seeds(1))


def test_kernel_psf_centre_is_pixel_h_over_2(tmp_path):
    even = np.zeros((4, 6))
    even[2, 3] = 5.0  # a delta at (h // 2, w // 2) leaves the image as it is
    image = blob(16, centre=6.0)
    out = KernelPSF(KernelPSF.Config(file=_write_fits(tmp_path / "even.fits", even))).apply(image, seeds(1))
    torch.testing.assert_close(out, image)
    big = np.zeros((101, 101))
    big[50, 51] = 1.0  # one pixel right of the centre, in a kernel larger than the image
    out = KernelPSF(KernelPSF.Config(file=_write_fits(tmp_path / "big.fits", big))).apply(image, seeds(1))
    torch.testing.assert_close(out[..., 1:], image[..., :-1])


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    (b"this is not FITS", "cannot be read as FITS"),
    (np.ones(5), "1-d array"),
    (np.full((5, 5), np.nan), "NaN or infinite"),
    (np.zeros((5, 5)), "sums to 0"),
])
def test_bad_kernel_files_are_config_errors(tmp_path, content, message):
    path = tmp_path / "psf.fits"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        _write_fits(path, content)
    with pytest.raises(ConfigError, match=message):
        KernelPSF(KernelPSF.Config(file=path))


# -- noise ----------------------------------------------------------------------------

def flat(level, *, n=8, size=32):
    """A batch of constant images; ``level`` is one value or one per band."""
    levels = torch.as_tensor(level, dtype=torch.float64).reshape(-1)
    return levels[None, :, None, None].expand(n, len(levels), size, size).clone()


def test_gaussian_noise_has_the_asked_variance_per_band():
    out = GaussianNoise(GaussianNoise.Config(std=[1.0, 2.0, 4.0])).apply(flat([5.0, 5.0, 5.0]), seeds(8))
    for band, std in enumerate([1.0, 2.0, 4.0]):
        values = out[:, band]
        assert values.mean() == pytest.approx(5.0, abs=4 * std / 90)  # 8192 pixels a band
        assert values.var() == pytest.approx(std**2, rel=0.06)


def test_poisson_noise_variance_is_mean_over_gain():
    levels, gain = [3.0, 40.0, 400.0], 2.5
    image = flat(levels)
    out = PoissonNoise(PoissonNoise.Config(gain=gain)).apply(image, seeds(8))
    for band, level in enumerate(levels):
        values = out[:, band]
        assert values.mean() == pytest.approx(level, rel=0.02)
        assert values.var() == pytest.approx(level / gain, rel=0.06)
        assert torch.allclose(values * gain, torch.round(values * gain))  # whole counts
    negative = PoissonNoise(PoissonNoise.Config(gain=1.0)).apply(flat(-5.0, n=1), seeds(1))
    assert (negative == 0).all()


@pytest.mark.parametrize(("level", "sky", "gain", "read_noise"), [
    (0.0, 100.0, 2.0, 5.0),
    (50.0, 100.0, 2.0, 5.0),
    (20.0, 0.0, 0.5, 0.0),
    (20.0, 30.0, 0.0, 3.0),  # gain 0: no Poisson noise, read noise in ADU (GalSim's convention)
])
def test_ccd_noise_variance_matches_galsim(level, sky, gain, read_noise):
    noise = CCDNoise(CCDNoise.Config(sky_level=sky, gain=gain, read_noise=read_noise))
    out = noise.apply(flat(level), seeds(8))
    expected = (level + sky) / gain + (read_noise / gain) ** 2 if gain > 0 else read_noise**2
    assert noise.variance(level) == pytest.approx(expected)
    reference = galsim.CCDNoise(galsim.BaseDeviate(1), sky_level=sky + level, gain=gain, read_noise=read_noise)
    assert noise.variance(level) == pytest.approx(reference.getVariance())
    assert out.mean() == pytest.approx(level, abs=4 * np.sqrt(expected / out.numel()))
    assert out.var() == pytest.approx(expected, rel=0.05)
    # GalSim applied to the same image: the same mean and variance
    image = galsim.Image(np.full((128, 64), level), scale=1.0)
    image.addNoise(galsim.CCDNoise(galsim.BaseDeviate(5), sky_level=sky, gain=gain, read_noise=read_noise))
    assert out.var() == pytest.approx(image.array.var(), rel=0.08)


@pytest.mark.parametrize("noise", [
    GaussianNoise(GaussianNoise.Config(std=3.0)),
    PoissonNoise(PoissonNoise.Config(gain=0.7)),
    CCDNoise(CCDNoise.Config(sky_level=50.0, gain=2.0, read_noise=4.0)),
], ids=["gaussian", "poisson", "ccd"])
def test_noise_is_a_pure_function_of_pixels_and_seeds(noise):
    image = flat([10.0, 20.0], n=6, size=8) + blob(8, bands=2)
    s = torch.tensor([11, 12, 13, 14, 15, 16])
    first = noise.apply(image, s)
    assert torch.equal(first, noise.apply(image, s))  # same seeds, same noise
    assert torch.equal(image, flat([10.0, 20.0], n=6, size=8) + blob(8, bands=2))  # input untouched
    other = noise.apply(image, s + 100)
    assert not torch.equal(first[0], other[0])  # other seeds, other noise
    assert not torch.equal(first[0], first[1])  # two samples, two draws
    # a sample depends only on its pixels and seed, not on the rest of the batch
    alone = noise.apply(image[3:4], s[3:4])
    assert torch.equal(alone[0], first[3])
    shuffled = noise.apply(torch.cat([image[3:4] * 0 + 99.0, image[3:4]]), torch.tensor([1, 14]))
    assert torch.equal(shuffled[1], first[3])


# -- resampling -----------------------------------------------------------------------

def test_resample_halves_the_resolution_and_conserves_flux():
    image = blob(32, bands=2, sigma=3.0)
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2  # the finest pattern
    image = image + 5.0 * checker.to(image.dtype)
    step = Resample(Resample.Config(scale=2.0))
    out = step.apply(image, seeds(1))
    assert out.shape == image.shape and step.pixel_scale_factor() == 1.0
    torch.testing.assert_close(out.sum(dim=(-2, -1)), image.sum(dim=(-2, -1)))
    blocks = out.reshape(1, 2, 16, 2, 16, 2)
    assert torch.equal(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))  # 2 x 2 pixels carry one value
    smooth = Resample(Resample.Config(scale=2.0)).apply(blob(32, bands=2, sigma=3.0), seeds(1))
    torch.testing.assert_close(out, smooth + 2.5)  # the checkerboard averaged away
    small = Resample(Resample.Config(scale=2.0, keep_size=False))
    coarse = small.apply(image, seeds(1))
    assert coarse.shape == (1, 2, 16, 16) and small.pixel_scale_factor() == 2.0
    torch.testing.assert_close(coarse.sum(dim=(-2, -1)), image.sum(dim=(-2, -1)))
    torch.testing.assert_close(coarse / 4, out[..., ::2, ::2])


@pytest.mark.parametrize("scale", [1.5, 3.0, 0.5])
def test_resample_conserves_flux_at_any_scale(scale):
    image = blob(30, bands=1, sigma=2.5)
    out = Resample(Resample.Config(scale=scale)).apply(image, seeds(1))
    assert out.shape == image.shape
    torch.testing.assert_close(out.sum(), image.sum())
    coarse = Resample(Resample.Config(scale=scale, keep_size=False)).apply(image, seeds(1))
    assert coarse.shape[-1] == int(30 / scale)
    torch.testing.assert_close(coarse.sum(), image.sum(), rtol=1e-4, atol=0)  # the blob is inside the new grid


# -- seeds ----------------------------------------------------------------------------

def _reference_derive(s: int, k: int) -> int:
    """The formula in galaug/degrade/seeds.py, in plain Python integers."""
    mask = 2**64 - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    return mix((mix(s & mask) + (k + 1) * 0x9E3779B97F4A7C15) & mask) >> 1


def test_seed_derivation_is_the_documented_hash():
    for s, k in [(0, 0), (1, 0), (0, 1), (2**63 - 1, 5), (-3, 7), (12345, 2**40)]:
        assert derive_seeds(s, k)[0] == _reference_derive(s, k)
    rows = derive_seeds(7, np.arange(1000))
    assert rows.dtype == np.int64 and len(set(rows.tolist())) == 1000 and (rows >= 0).all()
    assert np.array_equal(derive_seeds(np.array([7, 8]), 3), [_reference_derive(7, 3), _reference_derive(8, 3)])


# -- pipelines ------------------------------------------------------------------------

def test_pipeline_applies_steps_in_order_with_derived_seeds(registry):
    pipeline = parse("psf:gaussian(sigma=2)|resample(scale=2, keep_size=false)|noise:gaussian(std=[1, 2])", registry)
    image = blob(16, bands=2).expand(5, 2, 16, 16).contiguous()
    out = pipeline.apply(image, 3)
    assert out.shape == (5, 2, 8, 8) and pipeline.pixel_scale_factor() == 2.0 and pipeline.stochastic
    step_seeds = [torch.from_numpy(derive_seeds(derive_seeds(3, np.arange(5)), k)) for k in range(3)]
    x = image
    for step, s in zip(pipeline.steps, step_seeds):
        x = step.component.apply(x, s)
    assert torch.equal(out, x)
    assert torch.equal(out, pipeline.apply(image, torch.from_numpy(derive_seeds(3, np.arange(5)))))
    assert not torch.equal(out, pipeline.apply(image, 4))
    assert pipeline.output_shape((2, 16, 16)) == (2, 8, 8)


def test_a_sample_does_not_depend_on_the_rest_of_the_batch(registry):
    pipeline = parse("psf:moffat(beta=3, fwhm=[2, 3, 4])|noise:ccd(sky_level=100, gain=2, read_noise=5)"
                     "|resample(scale=1.5)|noise:poisson(gain=3)", registry)
    images = torch.rand(9, 3, 20, 20, dtype=torch.float32) * 100
    s = torch.from_numpy(derive_seeds(42, np.arange(9)))
    whole = pipeline.apply(images, s)
    pieces = torch.cat([pipeline.apply(images[i:i + 4], s[i:i + 4]) for i in range(0, 9, 4)])
    torch.testing.assert_close(whole, pieces, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(whole[5:6], pipeline.apply(images[5:6], s[5:6]), rtol=1e-6, atol=1e-4)


def test_canonical_spec_round_trips_and_records_the_config(registry, tmp_path):
    kernel = _write_fits(tmp_path / "my psf.fits", np.ones((3, 3)))
    pipeline = parse(f"psf:moffat( beta = 3.5 , fwhm=[2,2.2,2.4], )|resample(scale=2)|noise:ccd(gain=2, "
                     f"read_noise=5, sky_level=100)|psf-kernel(file='{kernel}')|noise:gaussian(std=1)", registry)
    assert pipeline.spec == (f'psf:moffat(beta=3.5, fwhm=[2.0, 2.2, 2.4])|resample(scale=2.0, keep_size=true)'
                             f'|noise:ccd(sky_level=100.0, gain=2.0, read_noise=5.0)|psf:kernel(file="{kernel}")'
                             f'|noise:gaussian(std=1.0)')
    assert parse(pipeline.spec, registry).spec == pipeline.spec
    steps = pipeline.config_dict()
    assert [s["degradation"] for s in steps] == ["psf-moffat", "resample", "noise-ccd", "psf-kernel", "noise-gaussian"]
    assert steps[0]["config"] == {"beta": 3.5, "fwhm": [2.0, 2.2, 2.4]} and steps[3]["config"]["file"] == str(kernel)
    json.dumps(steps)


@dataclasses.dataclass
class _OffsetConfig:
    value: float = 1.0
    label: str = "x"


class _Offset(Degradation):
    """A third-party degradation: adds a constant."""

    name = "offset"
    Config = _OffsetConfig

    def apply(self, images, seeds):
        return images + self.config.value


def test_third_party_degradations_are_found_by_their_bare_name(galaug_plugins):
    galaug_plugins.plugin(galaug_register=lambda register: register.degradation(_Offset))
    registry = galaug_plugins.manager.registry
    pipeline = parse("offset(value=2, label=3)|psf:gaussian(sigma=1)", registry)
    assert pipeline.steps[0].component.config.label == "3"  # a bare word for a str field stays as written
    assert pipeline.spec == 'offset(value=2.0, label="3")|psf:gaussian(sigma=1.0)'
    assert torch.equal(pipeline.steps[0].component.apply(torch.zeros(1, 1, 2, 2), seeds(1)), torch.full((1, 1, 2, 2), 2.0))
    with pytest.raises(ConfigError, match=r"unknown key 'valeu' for offset at column 8 \(did you mean 'value'\?\)"):
        parse("offset(valeu=2)", registry)


@pytest.mark.parametrize(("spec", "fragments"), [
    ("psf:gausian(sigma=2)", ["unknown degradation 'psf:gausian' at column 1", "did you mean 'psf:gaussian'?",
                              "available: noise:ccd, noise:gaussian"]),
    ("psf:gaussian(sigma=2)|nosie:ccd", ["unknown degradation 'nosie:ccd' at column 23", "did you mean 'noise:ccd'?"]),
    ("psf:gaussian(sigm=2)", ["unknown key 'sigm' for psf:gaussian at column 14 (did you mean 'sigma'?)"]),
    ("noise:ccd(zzz=1)", ["unknown key 'zzz' for noise:ccd at column 11 (keys: sky_level, gain, read_noise)"]),
    ("psf:gaussian(sigma=2", ["expected ',' or ')' at column 21 (found the end of the pipeline)"]),
    ("psf:gaussian(sigma=2 fwhm=3)", ["expected ',' or ')' at column 22 (found 'fwhm')"]),
    ("psf:gaussian(sigma=)", ["expected a value at column 20 (found ')')"]),
    ("psf:gaussian(sigma=[1, 2)", ["expected ',' or ']' at column 25 (found ')')"]),
    ("psf:gaussian(sigma=[1, [2]])", ["nested lists are not supported at column 24"]),
    ("psf:gaussian(2)", ["'2' is not a key at column 14"]),
    ("psf:gaussian(sigma=2) noise:ccd", ["expected '|' or the end of the pipeline at column 23 (found 'noise:ccd')"]),
    ("psf:gaussian(sigma=2)||noise:ccd", ["empty step at column 23"]),
    ("psf:gaussian(sigma=2)|", ["empty step at column 23"]),
    ("", ["empty pipeline at column 1"]),
    ("   ", ["empty pipeline at column 1"]),
    ("(sigma=2)", ["expected a degradation name at column 1 (found '(')"]),
    ("psf:gaussian(sigma=-2)", ["psf:gaussian: sigma must be > 0, got -2 at column 20"]),
    ("noise:gaussian(std=[1, -2])", ["noise:gaussian: std must be >= 0, got -2 at column 20"]),
    ("noise:ccd(sky_level=10, gain=-1)", ["noise:ccd: gain must be >= 0, got -1 at column 30"]),
    ("psf:moffat(beta=0.9, fwhm=2)", ["beta must be > 1, got 0.9 at column 17"]),
    ("psf:moffat(beta=3)", ["psf:moffat: fwhm is required at column 1"]),
    ("psf:gaussian()", ["give exactly one of sigma or fwhm (pixels, or an angle like 0.8arcsec) at column 1"]),
    ("psf:gaussian(sigma=1, fwhm=2)", ["give exactly one of sigma or fwhm"]),
    ("psf:gaussian(sigma=nan)", ["sigma must be a finite number, got nan at column 20"]),
    ("psf:gaussian(sigma=big)", ["sigma must be a number of pixels or an angle like 0.8arcsec, got 'big'",
                                 "at column 20"]),
    ("psf:gaussian(fwhm=0.8nJy)", ["fwhm '0.8nJy' must be in pixels or an angle (arcsec), not spectral flux density "
                                   "at column 19"]),
    ("psf:moffat(beta=3, fwhm=-1arcsec)", ["fwhm must be > 0, got -1 arcsec at column 25"]),
    ("noise:ccd(sky_level=10)", ["noise:ccd: gain is required: electrons per unit of the images' data"]),
    ("resample(scale=2, keep_size=maybe)", ["config key 'keep_size' expects true or false", "at column 29"]),
    ("resample(scale=0.01)", ["scale must be >= 0.0625, got 0.01 at column 16"]),
    ("noise:gaussian(std=1, std=2)", ["duplicate key 'std' at column 23"]),
    ("noise:gaussian(std=99999999999999999999)", ["integer 99999999999999999999 is out of range at column 20"]),
    ("psf:kernel(file='missing.fits')", ["psf:kernel: file 'missing.fits' does not exist at column 17"]),
    ("psf:kernel(file=\"x)", ["unterminated string at column 17 (no closing \")"]),
])
def test_bad_specs_are_one_line_errors_with_a_column(registry, spec, fragments):
    with pytest.raises(ConfigError) as info:
        parse(spec, registry)
    message = str(info.value)
    assert message.startswith(f'pipeline "{spec}": ') and "\n" not in message
    for fragment in fragments:
        assert fragment in message


_PIECES = ["psf:gaussian", "psf:moffat", "psf:kernel", "noise:gaussian", "noise:poisson", "noise:ccd", "resample",
           "psf-gaussian", "sigma", "fwhm", "beta", "std", "gain", "sky_level", "read_noise", "scale", "keep_size",
           "file", "(", ")", "[", "]", ",", "=", "|", " ", "2", "-1", "0", "3.5", "1e3", "1e999", "nan", "true",
           "'x.fits'", '"', "'", "\\", "\n", ":", "-"]


_STEPS = st.builds(
    lambda name, args: f"{name}({', '.join(args)})",
    st.sampled_from(_PIECES[:8]),
    st.lists(st.builds("{}={}".format, st.sampled_from(_PIECES[8:18]),
                       st.sampled_from(["2", "0", "-1", "3.5", "[1, 2]", "[]", "true", "nan", "x", "'a b'"])), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(st.sampled_from(_PIECES), max_size=24).map("".join),
                 st.lists(_STEPS, min_size=1, max_size=3).map("|".join)))
def test_any_string_parses_or_raises_a_config_error(registry, spec):
    try:
        pipeline = parse(spec, registry)
    except ConfigError as exc:
        assert "\n" not in str(exc) and " at column " in str(exc)
        return
    assert parse(pipeline.spec, registry).spec == pipeline.spec


# -- galaug degrade ------------------------------------------------------------------

SPEC = "psf:gaussian(sigma=1.5)|noise:ccd(sky_level=50, gain=2, read_noise=3)"


def test_degrade_writes_degraded_images_paired_with_clean_ones(galaug_plugins, make_dataset, tmp_path):
    ds = make_dataset(20, params=True, pixel_scale=0.2 * u.arcsec)
    res = galaug_plugins.invoke("degrade", ds.path, tmp_path / "d.zarr", "--degrade", SPEC, "--seed", "7")
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "20 samples" in res.output
    out = open_dataset(tmp_path / "d.zarr")
    src = ds.read()
    got = out.read()
    assert np.array_equal(got["clean"], src["images"]) and out.clean_shape == ds.image_shape
    assert np.array_equal(got["params"], src["params"]) and np.array_equal(got["index"], np.arange(20))
    assert not np.allclose(got["images"], src["images"])
    blurred = parse("psf:gaussian(sigma=1.5)", galaug_plugins.manager.registry).apply(torch.from_numpy(src["images"]), 0)
    assert abs(got["images"].mean() - blurred.mean().item()) < 0.3  # the sky is subtracted again
    expected = parse(SPEC, galaug_plugins.manager.registry).apply(torch.from_numpy(src["images"]), 7).numpy()
    assert np.array_equal(got["images"], expected)  # sample r gets derive_seeds(7, r), as Pipeline.apply(images, 7)
    entry = out.provenance[-1]
    assert entry["step"] == "degrade" and entry["seed"] == 7 and entry["parents"] == [ds.id]
    assert entry["config"]["pipeline"] == parse(SPEC, galaug_plugins.manager.registry).spec
    assert entry["config"]["device"] == "cpu" and entry["config"]["steps"][1]["degradation"] == "noise-ccd"
    assert out.pixel_scale == 0.2 * u.arcsec


def test_degrade_output_does_not_depend_on_batch_size(galaug_plugins, make_dataset, tmp_path):
    ds = make_dataset(23)
    outputs = []
    for batch in (3, 64):
        path = tmp_path / f"b{batch}.zarr"
        res = galaug_plugins.invoke("degrade", ds.path, path, "--degrade", SPEC, "--batch-size", batch, "--device", "cpu")
        assert res.exit_code == 0, res.output
        outputs.append(open_dataset(path).read()["images"])
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6, atol=1e-4)
    res = galaug_plugins.invoke("degrade", ds.path, tmp_path / "s1.zarr", "--degrade", SPEC, "--seed", "1")
    assert res.exit_code == 0 and not np.allclose(open_dataset(tmp_path / "s1.zarr").read()["images"], outputs[0])


def test_degrade_resample_updates_size_and_pixel_scale_and_keeps_the_first_clean(galaug_plugins, make_dataset, tmp_path):
    ds = make_dataset(10, pixel_scale=0.2 * u.arcsec)
    first, second = tmp_path / "one.zarr", tmp_path / "two.zarr"
    res = galaug_plugins.invoke("degrade", ds.path, first, "--degrade", "resample(scale=2, keep_size=false)")
    assert res.exit_code == 0, res.output
    one = open_dataset(first)
    assert one.image_shape == (3, 8, 8) and one.clean_shape == (3, 16, 16)
    assert one.pixel_scale.to_value(u.arcsec) == pytest.approx(0.4)
    np.testing.assert_allclose(one.read()["images"].sum((2, 3)), ds.read()["images"].sum((2, 3)), rtol=1e-4, atol=1e-3)
    res = galaug_plugins.invoke("degrade", first, second, "--degrade", "noise:gaussian(std=1)")
    assert res.exit_code == 0, res.output
    two = open_dataset(second)
    assert np.array_equal(two.read()["clean"], ds.read()["images"])  # clean is still the undegraded input
    assert [e["step"] for e in two.provenance] == ["test", "degrade", "degrade"]


@pytest.mark.parametrize(("spec", "fragments"), [
    ("psf:gausian(sigma=2)", ["unknown degradation 'psf:gausian' at column 1", "did you mean 'psf:gaussian'?"]),
    ("psf:gaussian(sigm=2)", ["unknown key 'sigm' for psf:gaussian at column 14"]),
    ("psf:gaussian(sigma=2", ["expected ',' or ')' at column 21"]),
    ("psf:moffat(beta=3, fwhm=[2, 3])", ["step 1 (psf:moffat): fwhm has 2 values but the images have 3 bands"]),
    ("psf:kernel(file=missing.fits)", ["file 'missing.fits' does not exist at column 17"]),
    ("resample(scale=40, keep_size=false)", ["scale 40 leaves no whole pixel of an image 16 pixels wide"]),
])
def test_degrade_bad_pipelines_are_user_errors(galaug_plugins, make_dataset, tmp_path, spec, fragments):
    ds = make_dataset(5)
    before = sorted(os.listdir(tmp_path))
    assert_user_error(galaug_plugins.invoke("degrade", ds.path, tmp_path / "o.zarr", "--degrade", spec), *fragments)
    assert sorted(os.listdir(tmp_path)) == before


def test_degrade_bad_paths_are_user_errors(galaug_plugins, make_dataset, tmp_path):
    ds = make_dataset(5)
    exists = make_dataset(3, name="exists.zarr")
    before = sorted(os.listdir(tmp_path))
    assert_user_error(galaug_plugins.invoke("degrade", ds.path, exists.path, "--degrade", SPEC),
                      "output exists", "--overwrite")
    assert_user_error(galaug_plugins.invoke("degrade", tmp_path / "nope.zarr", tmp_path / "o.zarr", "--degrade", SPEC),
                      "nope.zarr", "no such file or directory")
    if not torch.cuda.is_available():
        assert_user_error(galaug_plugins.invoke("degrade", ds.path, tmp_path / "o.zarr", "--degrade", SPEC,
                                                "--device", "cuda"), "CUDA is not available")
    assert sorted(os.listdir(tmp_path)) == before and open_dataset(exists.path).id == exists.id
    res = galaug_plugins.invoke("degrade", ds.path, exists.path, "--degrade", SPEC, "--overwrite")
    assert res.exit_code == 0 and len(open_dataset(exists.path)) == 5


def test_config_command_prints_a_degradations_defaults(galaug_plugins):
    res = galaug_plugins.invoke("config", "degradation", "noise-ccd")
    assert res.output == ("sky_level = 0.0\n# gain: unset (float)\nread_noise = 0.0\n"
                          "# note: gain is required: electrons per unit of the images' data (e-/ADU for counts, "
                          "e-/nJy for images in nJy; 0 switches Poisson noise off)\n")


def test_listing_plugins_shows_degradations_without_importing_torch():
    code = ("import sys\nfrom galaug.cli import main\n"
            "try:\n    main(['plugins'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules)")
    env = dict(os.environ, GALAUG_DISABLE_PLUGIN_AUTOLOAD="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    rows = {tuple(line.split()[:2]): line for line in out.splitlines()}
    for name in ("psf:gaussian", "psf:moffat", "psf:kernel", "noise:gaussian", "noise:poisson", "noise:ccd", "resample"):
        assert rows[("degradation", name)].endswith("lazy")  # listed by their spec names
    assert out.strip().splitlines()[-1] == "TORCH False"


def test_docs_describe_every_option_of_every_degradation_and_of_the_command(registry):
    from pathlib import Path

    import click

    from galaug.cli.degrade import degrade_cmd

    docs = Path(__file__).resolve().parents[1] / "docs"
    guide = (docs / "degradations.md").read_text()
    for entry in registry.entries("degradation"):
        section = re.search(rf"^### \S+ \(`{entry.name}`\)(.*?)(?=^##|\Z)", guide, flags=re.M | re.S)
        assert section, f"docs/degradations.md has no section for {entry.name}"
        for field in dataclasses.fields(registry.load(entry).Config):
            assert f"| `{field.name}` |" in section.group(1), f"{entry.name}.{field.name} undocumented"
    reference = re.search(r"^## galaug degrade\b(.*?)(?=^## |\Z)", (docs / "cli.md").read_text(), flags=re.M | re.S)
    assert reference, "docs/cli.md has no section for galaug degrade"
    for param in degrade_cmd.params:
        if isinstance(param, click.Option) and param.name != "threads":  # --threads: in the vocabulary
            assert f"- `{max(param.opts, key=len)}`" in reference.group(1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pipeline_runs_on_cuda_like_on_cpu(registry):
    pipeline = parse("psf:moffat(beta=3, fwhm=2.5)|resample(scale=2)|noise:poisson(gain=2)", registry)
    images = blob(32, bands=3).expand(4, 3, 32, 32).float().contiguous()
    out = pipeline.apply(images.cuda(), 1)
    assert out.device.type == "cuda" and out.dtype == torch.float32 and out.shape == images.shape
    clean = parse("psf:moffat(beta=3, fwhm=2.5)|resample(scale=2)", registry)
    torch.testing.assert_close(clean.apply(images.cuda(), 1).cpu(), clean.apply(images, 1), rtol=1e-4, atol=1e-4)
    assert torch.equal(out, pipeline.apply(images.cuda(), 1))


@pytest.mark.parametrize("spec", ["noise:gaussian(std=2)", "noise:poisson(gain=0.5)",
                                  "noise:ccd(sky_level=10, gain=2, read_noise=3)"])
def test_noise_is_the_same_for_any_number_of_threads_and_any_batch_size(spec):
    from galaug.degrade import parse_pipeline

    pipeline = parse_pipeline(spec)
    images = torch.from_numpy(galaxy_images(37, bands=2, size=16)).clamp(min=0)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(pipeline.apply(images, torch.arange(37) * 7919))
        torch.set_num_threads(2)
        halves = torch.cat([pipeline.apply(images[:20], torch.arange(20) * 7919),
                            pipeline.apply(images[20:], torch.arange(20, 37) * 7919)])
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(outs[0], o) for o in outs[1:]) and torch.equal(outs[0], halves)
    assert not torch.equal(outs[0], images)
