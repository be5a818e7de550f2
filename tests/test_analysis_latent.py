"""The latent-structure and interpolate analyses (plugins/analyses)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from galaug.degrade.seeds import derive_seeds
from galaug.fitting import render_sersic
from galaug.kinds import Generator, GeneratorModel, Layout
from galaug.sources.sersic import PARAM_NAMES, SersicConfig
from galaug.sources.simulate import simulate
from galaug_analyses.interpolate import bilinear, smoothness
from galaug_analyses.latent import order_latents

from test_cli import assert_user_error

SIZE, SCALE, FWHM, NOISE = 32, 0.4, 1.0, 1.0


# ------------------------------------------------------------------ the hyperplane and projection code

def planted(n=600, d=16, seed=0):
    rng = np.random.default_rng(seed)
    latents = rng.normal(size=(n, d))
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    values = latents @ direction + 0.05 * rng.normal(size=n)
    return latents, values, direction


@pytest.mark.parametrize("classifier", ["svm", "logistic"])
@pytest.mark.parametrize("split", ["median", "quantile"])
def test_a_planted_linear_direction_orders_the_latents(classifier, split):
    latents, values, direction = planted()
    o = order_latents(latents, values, split=split, classifier=classifier, folds=5, seed=0)
    assert o.spearman_rho > 0.95 and o.kendall_tau > 0.8
    assert o.accuracy > 0.9
    assert abs(o.normal @ direction) > 0.95  # the hyperplane's normal is the planted direction, low to high
    assert o.normal @ direction > 0


def test_shuffled_labels_do_not_order_the_latents():
    latents, values, _ = planted()
    shuffled = np.random.default_rng(1).permutation(values)
    o = order_latents(latents, shuffled, folds=5, seed=0)
    assert abs(o.spearman_rho) < 0.15  # out-of-fold projections: no credit for overfitting
    assert 0.35 < o.accuracy < 0.65


def test_too_few_latents_is_a_clear_error():
    latents, values, _ = planted(n=8)
    with pytest.raises(ValueError, match="too few latents"):
        order_latents(latents, values, folds=5)


# ------------------------------------------------------------------ a generator with a known latent space

ROTATION = np.linalg.qr(np.random.default_rng(42).normal(size=(8, 8)))[0]


def planted_params(w: np.ndarray) -> np.ndarray:
    """Sersic parameters that depend smoothly and monotonically on directions of w (rotated, not axes)."""
    u = np.asarray(w, dtype=np.float64) @ ROTATION.T
    sig = 1 / (1 + np.exp(-u))
    return np.stack([0.2 * np.tanh(u[:, 0]), 0.2 * np.tanh(u[:, 1]), 1.2 * np.exp(0.3 * np.tanh(u[:, 2])),
                     1.0 + 1.5 * sig[:, 3], 0.5 + 0.45 * sig[:, 4], math.pi * sig[:, 5],
                     1000 * np.exp(0.3 * np.tanh(u[:, 6]))], axis=1)


class PlantedModel(GeneratorModel):
    layout = Layout(bands=("r",), image_size=SIZE, pixel_scale=SCALE, flux_unit="adu")
    z_dim = w_dim = 8
    step = 0
    device = torch.device("cpu")

    def sample(self, n=None, *, seed=0, rows=None, truncation=None):
        rows = np.asarray(list(range(n) if rows is None else rows), dtype=np.int64)
        seeds = derive_seeds(seed, rows)
        z = torch.stack([torch.randn(8, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
        return {"images": self.decode(z, seeds=seeds.tolist()), "z": z, "w": self.map(z)}

    def map(self, z):
        return torch.as_tensor(z, dtype=torch.float32)

    def decode(self, w, *, seeds=None):
        w = torch.as_tensor(w, dtype=torch.float32)
        clean = render_sersic(planted_params(w.numpy()), image_size=SIZE, pixel_scale=SCALE, psf_fwhm=FWHM)
        seeds = [0] * len(w) if seeds is None else seeds
        noise = np.stack([np.random.default_rng(int(s)).normal(0, NOISE, (SIZE, SIZE)) for s in seeds])
        return torch.as_tensor(clean + noise, dtype=torch.float32)[:, None]

    def encode(self, images):
        raise NotImplementedError


class Planted(Generator):
    name = "planted"

    @classmethod
    def load(cls, run_dir, *, device="cpu", checkpoint=None):
        return PlantedModel()


@pytest.fixture(scope="module")
def sersic_data(tmp_path_factory):
    cfg = SersicConfig(image_size=SIZE, pixel_scale=SCALE, psf_fwhm=FWHM, noise_std=NOISE)
    return simulate("sersic", tmp_path_factory.mktemp("d") / "sersic.zarr", 40, seed=3, config=cfg)


def make_run(path, data=None):
    path.mkdir()
    options = {"galaug_run": 1, "generator": "planted", "seed": 0}
    if data is not None:
        options.update(data=str(data.path), data_id=data.id)
    (path / "options.json").write_text(json.dumps(options))
    return path


@pytest.fixture
def cli(galaug_plugins):
    import galaug_analyses

    galaug_plugins.register(galaug_analyses, name="analyses")
    galaug_plugins.plugin(galaug_register=lambda register: register.generator(Planted, name="planted"))
    return galaug_plugins


SMALL = ["--set", "n=80", "--set", "folds=3", "--set", "walk_latents=2", "--set", "walk_steps=3",
         "--set", "strip=4", "--set", "control=30", "--set", "fit_max_iter=100"]


def test_latent_structure_finds_the_planted_ordering(cli, sersic_data, tmp_path):
    run = make_run(tmp_path / "run", sersic_data)
    out = tmp_path / "latent"
    result = cli.invoke("analyze", "latent-structure", str(run), str(out), "--seed", "1", *SMALL)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    r = report["results"]
    assert r["psf_fwhm_arcsec"] == FWHM and r["noise_std"] == NOISE  # read from the training data's provenance
    assert r["psf"] == "Gaussian PSF of the training data"
    assert r["fits"]["n_fitted"] >= 70
    assert 0.7 < r["fits"]["chi2_reduced_median"] < 1.5
    params = r["parameters"]
    assert set(params) == set(PARAM_NAMES)
    for name in ("r_half", "q", "flux"):  # strongly constrained by the images: nearly perfectly ordered
        assert params[name]["spearman_rho"] > 0.85, (name, params[name])
        assert params[name]["accuracy"] > 0.8
    assert params["flux"]["walk_spearman_mean"] > 0.9  # moving along w*(flux) makes brighter galaxies
    control = r["control"]
    assert control["n"] == 30 and control["parameters"]["x"]["spearman_rho_fit_vs_true"] > 0.95
    assert control["parameters"]["r_half"]["spearman_rho_fit_vs_true"] > 0.8  # faint large galaxies are harder
    assert control["parameters"]["flux"]["spearman_rho_fit_vs_true"] is None  # the source's flux is fixed
    for figure in ("projection.png", "ordered.png", "walk.png", "walk_images.png", "control.png"):
        assert figure in r["figures"] and (out / figure).stat().st_size > 1000
    assert "| r_half |" in r["table"]
    assert report["seed"] == 1


def test_latent_structure_in_z_space_and_with_a_given_control(cli, sersic_data, tmp_path):
    run = make_run(tmp_path / "run")  # no training data: PSF and control must be given
    out = tmp_path / "latent"
    result = cli.invoke("analyze", "latent-structure", str(run), str(sersic_data.path), str(out),
                        "--set", "space=z", "--set", "walk_latents=0", *SMALL)
    assert result.exit_code == 0, result.output
    r = json.loads((out / "report.json").read_text())["results"]
    assert r["space"] == "z" and r["psf_fwhm_arcsec"] == FWHM  # from the control data's provenance
    assert r["psf"] == "Gaussian PSF of the control data"
    assert r["parameters"]["flux"]["spearman_rho"] > 0.85
    assert r["control"]["data"] == str(sersic_data.path)
    result = cli.invoke("analyze", "latent-structure", str(run), str(tmp_path / "border"), "--set", "control=0",
                        "--set", "psf_fwhm=1.0", "--set", "n=40", "--set", "folds=2", "--set", "walk_latents=0")
    assert result.exit_code == 0, result.output
    r = json.loads((tmp_path / "border" / "report.json").read_text())["results"]
    assert r["noise_std"] is None and r["control"] == {"skipped": "control = 0"}  # noise from each image's border


def test_latent_structure_errors(cli, sersic_data, tmp_path):
    run = make_run(tmp_path / "run")
    assert_user_error(cli.invoke("analyze", "latent-structure", str(run), str(tmp_path / "a")),
                      "psf_fwhm")
    assert_user_error(cli.invoke("analyze", "latent-structure", str(tmp_path), str(tmp_path / "b")),
                      "not a galaug run")
    assert_user_error(cli.invoke("analyze", "latent-structure", str(run), str(tmp_path / "c"),
                                 "--set", "band=g", "--set", "psf_fwhm=1"), "band 'g'", "r")
    assert_user_error(cli.invoke("analyze", "latent-structure", str(run), str(tmp_path / "d"),
                                 "--set", "split=tertile"), "split")
    assert not any(p.name in "abcd" for p in tmp_path.iterdir())  # nothing half-written


# ------------------------------------------------------------------ interpolation

def test_bilinear_grid_has_the_corners_and_even_steps():
    corners = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [6.0, 6.0]])
    grid = bilinear(corners, 4).reshape(4, 4, 2)
    np.testing.assert_allclose(grid[[0, 0, -1, -1], [0, -1, 0, -1]], corners)
    np.testing.assert_allclose(grid[1, 2], [4.0, 2.0])  # row 1 (v = 1/3), column 2 (u = 2/3)
    s = smoothness(grid.reshape(16, 2), 4)
    assert s["max_step_over_even"] == pytest.approx(1.0) and s["mean_step_over_even"] == pytest.approx(1.0)


def test_a_jump_in_the_grid_scores_more_than_an_even_path():
    k = 5
    images = bilinear(np.random.default_rng(0).normal(size=(4, 8, 8)), k)
    images[k * 2 + 2] += 5.0  # one grid point off the path
    assert smoothness(images, k)["max_step_over_even"] > 2.0
    with pytest.raises(ValueError, match="identical"):
        smoothness(np.zeros((k * k, 3)), k)


def test_interpolate_random_corners(cli, tmp_path):
    run = make_run(tmp_path / "run")
    out = tmp_path / "interp"
    result = cli.invoke("analyze", "interpolate", str(run), str(out), "--set", "k=5", "--set", "grids=2")
    assert result.exit_code == 0, result.output
    r = json.loads((out / "report.json").read_text())["results"]
    assert len(r["grids"]) == 2 and r["k"] == 5
    # the planted generator is smooth in w: no neighbour step far above the even one
    assert 1.0 <= r["max_step_over_even"] < 3.0
    assert r["ratio_to_crossfade"] == pytest.approx(
        np.mean([g["latent"]["max_step_over_even"] / g["pixel_crossfade"]["max_step_over_even"]
                 for g in r["grids"]]))
    assert (out / "interpolation.png").stat().st_size > 1000 and (out / "crossfade.png").exists()
    # the captions say what was measured on the grid each figure shows (the first), not what it should look like
    shown = r["grids"][0]
    assert f"is {shown['latent']['max_step_over_even']:.2f} times an even step" in r["captions"]["interpolation.png"]
    assert f"is {shown['pixel_crossfade']['max_step_over_even']:.2f} times" in r["captions"]["crossfade.png"]
    assert "smooth" not in " ".join(r["captions"].values())


def test_interpolate_encoded_corners_of_a_trained_alae(galaug_plugins, tmp_path):
    import galaug_alae
    import galaug_analyses
    from galaug_alae.generator import Alae, AlaeConfig

    galaug_plugins.register(galaug_alae, name="alae")
    galaug_plugins.register(galaug_analyses, name="analyses")
    data = simulate("sersic", tmp_path / "d.zarr", 32, seed=0,
                    config=SersicConfig(image_size=16, pixel_scale=0.8, noise_std=0.3))
    run = tmp_path / "run"
    run.mkdir()
    (run / "options.json").write_text(json.dumps({"galaug_run": 1, "generator": "alae", "data": str(data.path)}))
    Alae(AlaeConfig(image_size=16, latent_dim=8, mapping_layers=2, fmap_base=32, fmap_max=8, batch_size=8,
                    steps=4, transform_samples=32, sample_every=1000)).train(data.path, run, seed=0)
    out = tmp_path / "interp"
    result = galaug_plugins.invoke("analyze", "interpolate", str(run), str(data.path), str(out),
                                   "--set", "corners=encode", "--set", "rows=0,1,2,3", "--set", "k=3")
    assert result.exit_code == 0, result.output
    r = json.loads((out / "report.json").read_text())["results"]
    assert r["rows"] == [0, 1, 2, 3] and len(r["grids"]) == 1
    assert_user_error(galaug_plugins.invoke("analyze", "interpolate", str(run), str(data.path),
                                            str(tmp_path / "x"), "--set", "corners=encode", "--set", "rows=0,1,2,99"),
                      "out of range")
    assert_user_error(galaug_plugins.invoke("analyze", "interpolate", str(run), str(tmp_path / "y"),
                                            "--set", "corners=encode", "--set", "rows=0,1,2,3"), "needs a dataset")
