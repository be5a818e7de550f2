"""The example third-party generator examples/galaug-parametric: train, generate, sample, encode, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import torch

import galaug
from galaug.runs import write_options
from galaug.sources.sersic import Sersic, SersicConfig
from galaug.sources.simulate import simulate

from test_cli import assert_user_error

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "galaug-parametric"
if str(EXAMPLE) not in sys.path:  # not installed: import it from the source tree
    sys.path.insert(0, str(EXAMPLE))

import galaug_parametric  # noqa: E402
from galaug_parametric.generator import (  # noqa: E402
    Parametric,
    ParametricConfig,
    ParametricModel,
    fit_mixture,
    params_to_w,
    psf_from_provenance,
    w_to_params,
)

#: two bands, g at half the r flux: the colour the model must learn is ln 0.5
SERSIC = SersicConfig(image_size=32, pixel_scale=0.4, bands=("g", "r"), band_flux=(0.5, 1.0),
                      r_half_range=(0.8, 2.4), flux_range=(500.0, 2000.0), psf_fwhm=1.0, noise_std=1.0)


@pytest.fixture
def cli(galaug_plugins):
    """The CLI with the parametric plugin registered (discovery is blocked in tests)."""
    assert galaug_plugins.register(galaug_parametric, name="parametric").status == "ok"
    return galaug_plugins


@pytest.fixture(scope="module")
def sersic(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sersic.zarr"
    return simulate(Sersic(SERSIC), path, 40, seed=0)


@pytest.fixture(scope="module")
def run(sersic, tmp_path_factory):
    """A run fitted on all 40 images through the Python API (shared by the tests that only read it)."""
    run = tmp_path_factory.mktemp("runs") / "run"
    run.mkdir()
    write_options(run, {"generator": "parametric", "data": str(sersic.path), "data_id": sersic.id, "seed": 0})
    Parametric(ParametricConfig()).train(sersic.path, run, seed=0)
    return run


@pytest.fixture(scope="module")
def model(run):
    return Parametric.load(run)


def test_train_and_generate_through_the_cli(cli, sersic, tmp_path):
    res = cli.invoke("train", "parametric", sersic.path, "--run-dir", tmp_path / "runs", "--steps", "12",
                     "--set", "max_iter=100")
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name == "00000-parametric-sersic"
    options = json.loads((run / "options.json").read_text())
    assert options["config"]["max_iter"] == 100 and options["data_id"] == sersic.id
    (metrics,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics["fitted"] == 12 and metrics["succeeded"] >= 10
    assert metrics["psf_fwhm"] == {"g": 1.0, "r": 1.0}  # from the sersic source's provenance
    assert list(run.glob("samples-*.png")) and list(run.glob("checkpoints/ckpt-*.pt"))

    res = cli.invoke("generate", "parametric", run, tmp_path / "gen.zarr", "-n", "6", "--seed", "0", "--batch-size", "4")
    assert res.exit_code == 0, res.output
    gen = galaug.open_dataset(tmp_path / "gen.zarr")
    assert len(gen) == 6 and gen.image_shape == (2, 32, 32) and gen.bands == ("g", "r")
    assert gen.pixel_scale == sersic.pixel_scale and gen.flux_unit == sersic.flux_unit
    assert gen.latent_dim == 8 and gen.z_dim == 8  # x, y, ln r, logit n, v1, v2, ln flux, colour_g
    data = gen.read()
    assert (data["origin"] == 1).all() and gen.origin_counts()["generated"] == 6
    assert np.isfinite(data["images"]).all() and data["images"].std() > 0
    # what generate wrote is what the loaded model samples
    loaded = galaug.load_generator(run)
    again = loaded.sample(rows=[2, 3, 4, 5], seed=0)
    np.testing.assert_array_equal(data["images"][2:], again["images"].numpy())
    np.testing.assert_array_equal(data["latents"][2:], again["w"].numpy())


def test_generated_parameters_follow_the_training_ones(model, sersic):
    """Fits to generated images: median r_half, flux and colour close to the training set's true values."""
    out = model.sample(24, seed=1)
    w = model.encode(out["images"]).numpy()
    assert np.isfinite(w).all()
    params, ratios = model.params(w)
    truth = sersic.read(fields=["params"])["params"]
    assert np.median(params[:, 2]) == pytest.approx(np.median(truth[:, 2]), rel=0.2)  # r_half
    assert np.median(params[:, 6]) == pytest.approx(np.median(truth[:, 6]), rel=0.25)  # flux
    assert np.median(ratios[:, 0]) == pytest.approx(0.5, rel=0.05)  # g / r
    # encode(decode(w)) recovers w: position, size, flux and colour
    err = np.median(np.abs(w - out["w"].numpy()), axis=0)
    names = list(model.w_names)
    for name, tol in (("x", 0.05), ("y", 0.05), ("ln_r_half", 0.1), ("ln_flux", 0.1), ("colour_g", 0.05)):
        assert err[names.index(name)] < tol, (name, err)


def test_sample_is_reproducible_and_batch_independent(model):
    full = model.sample(10, seed=3)
    part = model.sample(rows=[7, 2, 5], seed=3)
    for key in ("images", "z", "w"):
        assert torch.equal(part[key], full[key][[7, 2, 5]]), key
        assert torch.equal(model.sample(10, seed=3)[key], full[key]), key
    assert not torch.equal(model.sample(10, seed=4)["w"], full["w"])
    assert full["images"].shape == (10, 2, 32, 32) and full["images"].dtype == torch.float32
    torch.testing.assert_close(model.map(full["z"]), full["w"])
    # truncation pulls w towards the mean
    mean = torch.as_tensor(model.means[0], dtype=torch.float32)
    half = model.sample(10, seed=3, truncation=0.5)["w"]
    torch.testing.assert_close(half - mean, 0.5 * (full["w"] - mean), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.sample(3, seed=3, truncation=0.0)["w"], mean.expand(3, -1))


def test_decode_adds_seeded_noise_of_the_measured_level(model):
    w = model.sample(4, seed=0)["w"]
    clean = model.decode(w)
    assert torch.equal(clean, model.decode(w))
    noisy = model.decode(w, seeds=[1, 2, 3, 4])
    assert torch.equal(noisy, model.decode(w, seeds=[1, 2, 3, 4]))
    assert torch.equal(noisy[1:2], model.decode(w[1:2], seeds=[2]))
    std = (noisy - clean).std(dim=(0, 2, 3)).numpy()
    np.testing.assert_allclose(std, model.noise_std, rtol=0.1)
    np.testing.assert_allclose(model.noise_std, 1.0, rtol=0.15)  # the simulation's noise_std
    torch.testing.assert_close(model.reconstruct(clean[:1]), clean[:1], rtol=0, atol=0.05)


def test_w_round_trips_through_the_parameters():
    rng = np.random.default_rng(0)
    params = np.column_stack([rng.uniform(-1, 1, 20), rng.uniform(-1, 1, 20), rng.uniform(0.5, 3, 20),
                              rng.uniform(0.5, 5, 20), rng.uniform(0.2, 1, 20), rng.uniform(0, np.pi, 20),
                              rng.uniform(10, 1e4, 20)])
    ratios = rng.uniform(0.2, 3, (20, 3))
    back, back_ratios = w_to_params(params_to_w(params, ratios), r_half_range=(0.01, 100))
    np.testing.assert_allclose(back, params, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(back_ratios, ratios, rtol=1e-9)


def test_a_mixture_picks_its_component_from_z0(model):
    state = {"step": 1, "config": {"components": 2}, "seed": 0, "psf_fwhm": [1.0, 1.0], "reference_band": "r",
             "layout": {"bands": ["g", "r"], "image_size": 32, "pixel_scale_arcsec": 0.4,
                        "pixel_scale": {"value": 0.4, "unit": "arcsec"}, "flux_unit": "adu"},
             "w_names": list(model.w_names), "weights": torch.tensor([0.25, 0.75], dtype=torch.float64),
             "means": torch.stack([torch.as_tensor(model.means[0]), torch.as_tensor(model.means[0]) + 1]),
             "cholesky": torch.stack([torch.eye(8, dtype=torch.float64)] * 2) * 0.01,
             "noise_std": torch.ones(2, dtype=torch.float64)}
    mix = ParametricModel(state, device="cpu")
    assert (mix.z_dim, mix.w_dim) == (9, 8)
    z = torch.zeros(2, 9)
    z[0, 0], z[1, 0] = -2.0, 2.0  # Phi(-2) < 0.25 < Phi(2)
    w = mix.map(z).numpy()
    np.testing.assert_allclose(w, np.stack([model.means[0], model.means[0] + 1]), atol=1e-5)
    out = mix.sample(5, seed=0, truncation=0.0)
    assert out["z"].shape == (5, 9) and out["images"].shape == (5, 2, 32, 32)


def test_the_mixture_fit_finds_two_clusters():
    rng = np.random.default_rng(0)
    w = np.concatenate([rng.normal(0, 0.1, (60, 3)), rng.normal(2, 0.1, (140, 3))])
    w[:, 2] = 7.0  # a parameter that does not vary keeps a positive-definite covariance
    weights, means, covariances, converged = fit_mixture(w, 2, seed=0)
    order = np.argsort(weights)
    np.testing.assert_allclose(weights[order], [0.3, 0.7], atol=1e-6)
    np.testing.assert_allclose(means[order][:, :2], [[0, 0], [2, 2]], atol=0.05)
    assert converged and (np.linalg.eigvalsh(covariances) > 0).all()
    (weight,), (mean,), (cov,), _ = fit_mixture(w, 1, seed=0)
    np.testing.assert_allclose(mean, w.mean(axis=0))
    np.testing.assert_allclose(cov[:2, :2], np.cov(w[:, :2], rowvar=False, bias=True), rtol=1e-4)


def test_psf_from_provenance():
    sersic = {"plugin": "source:sersic", "step": "simulate", "config": {"psf_fwhm": 0.8}}
    bulgedisk = {"plugin": "source:bulgedisk", "step": "simulate",
                 "config": {"bands": ["g", "r", "i", "z"], "psf_fwhm": [0.9, 0.8, 0.75, 0.7]}}
    assert psf_from_provenance([sersic], ("r",)) == [0.8]
    assert psf_from_provenance([bulgedisk, {"step": "split"}], ("g", "r", "i", "z")) == [0.9, 0.8, 0.75, 0.7]
    assert psf_from_provenance([sersic, {"step": "degrade"}], ("r",)) is None  # degraded since
    assert psf_from_provenance([{"plugin": "source:fits", "step": "ingest"}], ("r",)) is None
    assert psf_from_provenance([sersic, {**sersic, "config": {"psf_fwhm": 1.2}}], ("r",)) is None  # disagree
    assert psf_from_provenance([{**sersic, "config": {"psf": "none"}}], ("r",)) is None


def test_a_dataset_of_unknown_psf_needs_psf_fwhm(cli, tmp_path):
    images = np.random.default_rng(0).normal(0, 1, (8, 1, 16, 16)).astype(np.float32)
    path = tmp_path / "other.zarr"
    with galaug.create_dataset(path, bands=["r"], image_size=16, pixel_scale=0.4 * u.arcsec,
                               provenance=galaug.make_entry("test")) as writer:
        writer.append(images)
    runs = tmp_path / "runs"
    assert_user_error(cli.invoke("train", "parametric", path, "--run-dir", runs), "PSF is unknown", "psf_fwhm")
    assert list(runs.iterdir()) == []  # nothing trained: no run left behind
    assert_user_error(cli.invoke("train", "parametric", path, "--run-dir", runs, "--set", "psf_fwhm=1,2"),
                      "psf_fwhm has 2 values for 1 bands")
    assert_user_error(cli.invoke("train", "parametric", path, "--set", "psf_fwhm=-1"), "psf_fwhm must be positive")
    assert_user_error(cli.invoke("train", "parametric", path, "--run-dir", runs, "--set", "psf_fwhm=1",
                                 "--set", "reference_band=i"), "reference_band 'i'")
    assert list(runs.iterdir()) == []
