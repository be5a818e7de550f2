"""Pipelines built from components, and ``scaled``: the same noise, ``factor`` times stronger."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from galaug.degrade import Pipeline, derive_seeds, parse_pipeline
from galaug.degrade.noise import (CCDNoise, CCDNoiseConfig, GaussianNoise, GaussianNoiseConfig, PoissonNoise,
                                  PoissonNoiseConfig)
from galaug.degrade.psf import GaussianPSF, GaussianPSFConfig, MoffatPSF, MoffatPSFConfig
from galaug.degrade.resample import Resample, ResampleConfig
from galaug.kinds import Degradation
from galaug.pluginmanager import PluginManager


@pytest.fixture(scope="module")
def registry():
    return PluginManager(autoload=False, blocked=()).registry


def images(n=4, bands=3, size=16):
    return torch.rand((n, bands, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 50


# -- Degradation.scaled of the built-ins ----------------------------------------------------------


def test_gaussian_noise_scaled_multiplies_std():
    noise = GaussianNoise(GaussianNoiseConfig(std=4.0))
    assert noise.scaled(5).config.std == 20.0
    assert noise.config.std == 4.0  # a new instance; the original is unchanged
    per_band = GaussianNoise(GaussianNoiseConfig(std=[1.0, 2.0, 0.5])).scaled(2)
    assert per_band.config.std == (2.0, 4.0, 1.0)


def test_poisson_noise_scaled_divides_gain_by_factor_squared():
    assert PoissonNoise(PoissonNoiseConfig(gain=8.0)).scaled(2).config.gain == 2.0
    assert PoissonNoise(PoissonNoiseConfig(gain=[4.0, 100.0])).scaled(2).config.gain == (1.0, 25.0)


def test_ccd_noise_scaled_grows_read_noise_and_sky():
    ccd = CCDNoise(CCDNoiseConfig(sky_level=10.0, gain=2.0, read_noise=3.0)).scaled(5)
    assert (ccd.config.sky_level, ccd.config.gain, ccd.config.read_noise) == (250.0, 2.0, 15.0)
    # the sky's and the read noise's variance grow factor**2 times; the signal's Poisson variance does not
    base = CCDNoise(CCDNoiseConfig(sky_level=10.0, gain=2.0, read_noise=3.0))
    assert ccd.variance(0.0) == pytest.approx(25 * base.variance(0.0))
    assert ccd.variance(40.0) - ccd.variance(0.0) == pytest.approx(base.variance(40.0) - base.variance(0.0))


@pytest.mark.parametrize("component", [GaussianPSF(GaussianPSFConfig(sigma=2.0)),
                                       MoffatPSF(MoffatPSFConfig(beta=3.5, fwhm=2.5)),
                                       Resample(ResampleConfig(scale=2.0))])
def test_non_stochastic_degradations_scale_to_themselves(component):
    assert component.scaled(5) is component


@pytest.mark.parametrize("factor", [0, -1, float("nan"), float("inf"), True, "5"])
def test_bad_factors_are_value_errors(registry, factor):
    with pytest.raises(ValueError, match="factor must be a finite number > 0"):
        GaussianNoise(GaussianNoiseConfig(std=1.0)).scaled(factor)
    with pytest.raises(ValueError, match="factor must be a finite number > 0"):
        parse_pipeline("noise:gaussian(std=1)", registry=registry).scaled(factor)


# -- Pipelines from components ---------------------------------------------------------------------

SPEC = "psf:gaussian(sigma=2)|resample(scale=2, keep_size=false)|noise:gaussian(std=[1, 2, 3])|noise:poisson(gain=4)"


def components():
    return [GaussianPSF(GaussianPSFConfig(sigma=2)), Resample(ResampleConfig(scale=2, keep_size=False)),
            GaussianNoise(GaussianNoiseConfig(std=[1, 2, 3])), PoissonNoise(PoissonNoiseConfig(gain=4))]


def test_a_pipeline_of_components_is_the_parsed_pipeline(registry):
    built, parsed = Pipeline(components()), parse_pipeline(SPEC, registry=registry)
    assert built.spec == parsed.spec
    assert built.config_dict() == parsed.config_dict()  # names and plugin versions as the registry gives them
    assert [s.name for s in built.steps] == ["psf-gaussian", "resample", "noise-gaussian", "noise-poisson"]
    assert parse_pipeline(built.spec, registry=registry).spec == built.spec
    x = images()
    seeds = torch.from_numpy(derive_seeds(11, torch.arange(4).numpy()))
    assert torch.equal(built.apply(x, 7), parsed.apply(x, 7))
    assert torch.equal(built.apply(x, seeds), parsed.apply(x, seeds))


def test_steps_and_components_mix(registry):
    parsed = parse_pipeline("psf:gaussian(sigma=2)", registry=registry)
    pipeline = Pipeline([*parsed.steps, GaussianNoise(GaussianNoiseConfig(std=1.0))])
    assert pipeline.steps[0] is parsed.steps[0]
    assert pipeline.spec == "psf:gaussian(sigma=2.0)|noise:gaussian(std=1.0)"


@pytest.mark.parametrize("steps, error, message", [
    ([], ValueError, "at least one step"),
    ("noise:gaussian(std=1)", TypeError, "parse a spec with parse_pipeline"),
    ([GaussianNoise], TypeError, "got the class GaussianNoise"),
    ([GaussianNoiseConfig(std=1.0)], TypeError, "got GaussianNoiseConfig"),
])
def test_bad_steps(steps, error, message):
    with pytest.raises(error, match=message):
        Pipeline(steps)


# -- Pipeline.scaled -------------------------------------------------------------------------------


def test_pipeline_scaled_scales_every_noise_step_and_keeps_the_rest(registry):
    pipeline = parse_pipeline("psf:gaussian(sigma=2)|noise:gaussian(std=[1, 2, 3])|noise:ccd(sky_level=4, gain=1, "
                              "read_noise=1)", registry=registry)
    strong = pipeline.scaled(5)
    assert strong.spec == ("psf:gaussian(sigma=2.0)|noise:gaussian(std=[5.0, 10.0, 15.0])"
                           "|noise:ccd(sky_level=100.0, gain=1.0, read_noise=5.0)")
    assert strong.steps[0] is pipeline.steps[0]
    assert [s.version for s in strong.steps] == [s.version for s in pipeline.steps]
    assert pipeline.spec.startswith("psf:gaussian(sigma=2.0)|noise:gaussian(std=[1.0, 2.0, 3.0])")  # unchanged


def test_scaled_gaussian_noise_is_the_same_draw_times_factor(registry):
    zeros = torch.zeros((3, 2, 8, 8), dtype=torch.float64)
    pipeline = parse_pipeline("noise:gaussian(std=[1, 2])", registry=registry)
    torch.testing.assert_close(pipeline.scaled(5).apply(zeros, 3), 5 * pipeline.apply(zeros, 3))


# -- third-party degradations ----------------------------------------------------------------------


@dataclasses.dataclass
class _HumConfig:
    amplitude: float = 1.0


class _Hum(Degradation):
    """A third-party noise that knows how to be stronger: a random offset per sample."""

    name = "noise-hum"
    Config = _HumConfig
    stochastic = True

    def apply(self, images, seeds):
        draws = torch.stack([torch.randn((), generator=torch.Generator().manual_seed(int(s)), dtype=images.dtype)
                             for s in seeds.tolist()])
        return images + self.config.amplitude * draws[:, None, None, None].to(images.device)

    def scaled(self, factor):
        return _Hum(dataclasses.replace(self.config, amplitude=self.config.amplitude * factor))


class _Hiss(_Hum):
    """A third-party noise that does not implement ``scaled``."""

    name = "noise-hiss"
    scaled = Degradation.scaled


@pytest.fixture
def third_party(galaug_plugins):
    galaug_plugins.plugin(galaug_register=lambda register: (register.degradation(_Hum), register.degradation(_Hiss)))
    return galaug_plugins.manager.registry


def test_a_third_party_noise_takes_part_in_pipeline_scaled(third_party):
    pipeline = parse_pipeline("psf:gaussian(sigma=1)|noise:hum(amplitude=2)", registry=third_party)
    strong = pipeline.scaled(3)
    assert strong.spec == "psf:gaussian(sigma=1.0)|noise:hum(amplitude=6.0)"
    assert isinstance(strong.steps[1].component, _Hum) and strong.steps[1].name == "noise-hum"
    zeros = torch.zeros((2, 1, 8, 8), dtype=torch.float64)
    torch.testing.assert_close(strong.apply(zeros, 1), 3 * pipeline.apply(zeros, 1))
    built = Pipeline([GaussianPSF(GaussianPSFConfig(sigma=1)), _Hum(_HumConfig(amplitude=2))])
    assert built.scaled(3).spec == strong.spec
    assert torch.equal(built.apply(zeros, 1), pipeline.apply(zeros, 1))


def test_a_third_party_noise_without_scaled_is_a_clear_value_error(third_party):
    with pytest.raises(ValueError, match=r"cannot make noise:hiss 5x stronger: it does not implement scaled\(\)"):
        _Hiss().scaled(5)
    pipeline = parse_pipeline("psf:gaussian(sigma=1)|noise:hiss", registry=third_party)
    with pytest.raises(ValueError, match=r"step 2 \(noise:hiss\): cannot make noise:hiss 5x stronger: "
                                         r"it does not implement scaled\(\)"):
        pipeline.scaled(5)
