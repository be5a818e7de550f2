"""The example third-party task plugin ``examples/galaug-morph`` (task ``size-flux``), driven like any task."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import galaug
from galaug.sources.sersic import SersicConfig
from galaug.sources.simulate import simulate

from test_cli import assert_user_error

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "galaug-morph"
if importlib.util.find_spec("galaug_morph") is None:  # not pip-installed: import it from its folder
    sys.path.insert(0, str(EXAMPLE))

import galaug_morph  # noqa: E402
from galaug_morph.targets import measure  # noqa: E402
from galaug_morph.task import SizeFlux, SizeFluxConfig, split_rows  # noqa: E402

SPEC = "psf:gaussian(sigma=1)|noise:gaussian(std=0.5)"
#: small Sersic profiles (low index: fast to draw) with radii and fluxes that vary a lot
SERSIC = SersicConfig(image_size=16, pixel_scale=0.8, n_range=(0.5, 1.5), r_half_range=(0.6, 3.0),
                      flux_range=(100.0, 3000.0))
FAST = {"epochs": 6, "batch_size": 16, "width": 16}


def sets(**values):
    return [x for k, v in values.items() for x in ("--set", f"{k}={v}")]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Training (256), validation (64) and a third, independent set (64) of simulated galaxies."""
    root = tmp_path_factory.mktemp("morph-data")
    return {name: simulate("sersic", root / f"{name}.zarr", n, seed=seed, config=SERSIC).path
            for name, n, seed in (("train", 256, 0), ("val", 64, 1), ("other", 64, 2))}


@pytest.fixture
def cli(galaug_plugins):
    status = galaug_plugins.register(galaug_morph, name="morph")
    assert status.status == "ok", status.status
    return galaug_plugins


# -- targets ---------------------------------------------------------------------------------

def test_targets_are_measured_on_the_image():
    y, x = np.mgrid[:48, :48] - 23.2
    sigma = np.array([1.5, 3.0, 5.0])[:, None, None]
    images = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    images = (images / images.sum(axis=(1, 2), keepdims=True) * np.array([10.0, 100.0, 1000.0])[:, None, None])
    images = np.stack([images * 0.25, images * 0.75], axis=1)  # two bands, summed
    targets, valid = measure(images)
    assert valid.all()
    np.testing.assert_allclose(10 ** targets[:, 1], [10, 100, 1000], rtol=1e-9)
    # half-light radius of a Gaussian: sqrt(2 ln 2) sigma, pixel-integration widens it a little
    np.testing.assert_allclose(10 ** targets[:, 0], 1.1774 * np.sqrt(sigma.ravel() ** 2 + 1 / 12), rtol=0.02)
    turned = np.flip(np.rot90(images, 1, axes=(2, 3)), axis=3)  # unchanged by flips and rotations
    np.testing.assert_allclose(measure(turned)[0], targets, atol=1e-9)
    bad = np.stack([np.zeros((1, 8, 8)), -np.ones((1, 8, 8)), np.full((1, 8, 8), np.nan)])
    t, ok = measure(bad)
    assert not ok.any() and np.isnan(t).all()


def test_holdout_is_seeded_disjoint_blocks():
    train, held = split_rows(1000, 0.1, seed=3, chunk_rows=64)
    assert sorted([*train, *held]) == list(range(1000)) and 100 <= len(held) < 113
    assert np.array_equal(held, split_rows(1000, 0.1, seed=3, chunk_rows=64)[1])
    assert not np.array_equal(held, split_rows(1000, 0.1, seed=4, chunk_rows=64)[1])


# -- the plugin through the command line -----------------------------------------------------

def test_registered_lazily_with_a_typed_config(cli):
    listing = cli.invoke("plugins")
    (line,) = [l for l in listing.output.splitlines() if "size-flux" in l]
    assert listing.exit_code == 0 and line.split()[0] == "task" and line.split()[-1] == "lazy"
    res = cli.invoke("config", "task", "size-flux")
    assert res.exit_code == 0 and "width = 16" in res.output and "holdout = 0.1" in res.output


def test_train_and_eval_beat_the_training_mean(cli, data, tmp_path):
    res = cli.invoke("task", "train", "size-flux", data["train"], "--degrade", SPEC, "--run-dir", tmp_path / "runs",
                     "--device", "cpu", *sets(**FAST))
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == list(range(1, 7)) and all(math.isfinite(l["holdout_loss"]) for l in lines)
    assert {"best.pt", "ckpt-000005.pt", "ckpt-000006.pt"} == {p.name for p in (run / "checkpoints").iterdir()}
    res = cli.invoke("task", "eval", "size-flux", run, data["val"], "--device", "cpu")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[: res.output.rindex("wrote")])
    assert set(summary) == {"nominal", "lowres"}
    assert all(math.isfinite(v) for s in summary.values() for v in s.values())
    report = json.loads((run / "metrics-val.json").read_text())["metrics"]
    assert report["n_valid"] == 64 and report["degrade"] == "psf:gaussian(sigma=1.0)|noise:gaussian(std=0.5)"
    nominal = report["nominal"]
    for target in ("radius", "flux"):  # well below the error of predicting the training mean
        assert nominal["model"][target]["rmse"] < 0.7 * nominal["baseline"][target]["rmse"], nominal
    assert summary["nominal"]["rmse"] < summary["nominal"]["baseline_rmse"]


def test_resume_ends_with_the_same_weights(data, tmp_path):
    cfg = SizeFluxConfig(epochs=2, batch_size=16, width=4, levels=1, max_steps_per_epoch=3)
    runs = []
    for name in ("a", "b"):
        run = tmp_path / name
        run.mkdir()
        (run / "options.json").write_text(json.dumps({"galaug_run": 1, "task": "size-flux", "degrade": SPEC}))
        SizeFlux(cfg).train(data["other"], run, degrade=SPEC, seed=5)
        runs.append(run)
    (runs[1] / "checkpoints" / "ckpt-000002.pt").unlink()  # as if interrupted after epoch 1
    SizeFlux(cfg).train(data["other"], runs[1], degrade=SPEC, seed=5, resume=True)
    a, b = (torch.load(r / "checkpoints" / "ckpt-000002.pt", weights_only=True) for r in runs)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    assert len((runs[1] / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_mix_is_training_data(cli, data, tmp_path):
    res = cli.invoke("mix", tmp_path / "mix.zarr", "--real-data", data["other"], "--real", "0.5",
                     "--gen-data", data["train"], "--gen", "1x")
    assert res.exit_code == 0, res.output
    assert galaug.open_dataset(tmp_path / "mix.zarr").origin_counts() == {"real": 32, "generated": 64}
    res = cli.invoke("task", "train", "size-flux", tmp_path / "mix.zarr", "--degrade", SPEC, "--run-dir",
                     tmp_path / "runs", *sets(epochs=1, batch_size=32, width=4))
    assert res.exit_code == 0, res.output


def test_ratio_experiment_runs_unchanged(cli, data, tmp_path):
    (tmp_path / "exp.toml").write_text(
        f'task = "size-flux"\nreal = "{data["other"]}"\nval = "{data["val"]}"\ngen = "{data["train"]}"\n'
        f'degrade = "{SPEC}"\nseeds = [0]\nout = "exp"\nmetric = "rmse"\n'
        '[task_config]\nepochs = 2\nbatch_size = 16\nwidth = 8\n'
        '[[arms]]\nname = "100% real"\nreal = "1.0"\n'
        '[[arms]]\nname = "1x gen + 100% real"\nreal = "1.0"\ngen = "1x"\n')
    res = cli.invoke("experiment", "ratios", tmp_path / "exp.toml")
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert results["metric"] == "rmse" and results["test_sets"] == ["nominal", "lowres"]
    assert list(results["table"]) == ["100% real", "1x gen + 100% real"]
    assert all(math.isfinite(cell["mean"]) for arm in results["table"].values() for cell in arm.values())


def test_bad_input_is_one_clear_line(cli, data, tmp_path):
    runs = ["--run-dir", tmp_path / "runs"]
    assert_user_error(cli.invoke("task", "train", "size-flux", data["other"], "--set", "widht=8", *runs),
                      "unknown config key 'widht'")
    assert_user_error(cli.invoke("task", "train", "size-flux", data["other"], "--set", "holdout=1.5", *runs),
                      "holdout must be in [0, 1)")
    (tmp_path / "notes.zarr").mkdir()
    (tmp_path / "notes.zarr" / "readme.txt").write_text("not a dataset")
    assert_user_error(cli.invoke("task", "train", "size-flux", tmp_path / "notes.zarr", *runs), "notes.zarr")
    assert_user_error(cli.invoke("task", "train", "size-flux", data["other"], "--degrade",
                                 "psf:moffat(beta=3.5, fwhm=[2, 2.2])", *runs), "psf:moffat")  # 2 values, 1 band
    with galaug.create_dataset(tmp_path / "dark.zarr", bands=("r",), image_size=8,
                               provenance=galaug.make_entry("test")) as w:
        w.append(np.zeros((20, 1, 8, 8), np.float32))
    assert_user_error(cli.invoke("task", "train", "size-flux", tmp_path / "dark.zarr", *runs),
                      "no training image has a positive total flux")
    assert_user_error(cli.invoke("task", "eval", "size-flux", tmp_path, data["val"]), "not a galaug run")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())  # nothing left behind
