"""The denoiser's classical baselines: they denoise, they are tuned on training data only, they reach the
metrics file, the experiment table and the report; a bad name is one line and nothing runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import galaug
from galaug.degrade import derive_seeds, parse_pipeline
from galaug.errors import ParamError
from galaug.kinds import Task
from galaug.runs import baseline_names
from galaug_denoise.baselines import BASELINES, DEFAULT_BASELINES, psf_kernels, restore, tune
from galaug_denoise.task import TEST_SETS, Denoise, DenoiseConfig

from conftest import galaxy_images
from test_cli import assert_user_error

SPEC = "psf:gaussian(sigma=1)|noise:gaussian(std=10)"
TINY = DenoiseConfig(width=8, blocks=1, batch_size=16, epochs=1, lr=3e-3, holdout=0)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_dataset(path, images):
    with galaug.create_dataset(path, bands=tuple("gr"[: images.shape[1]]), image_size=images.shape[-1],
                               provenance=galaug.make_entry("test")) as w:
        w.append(images)
    return galaug.open_dataset(path)


def new_run(path, train, *, degrade=SPEC, seed=0):
    """A run directory as ``galaug task train`` starts it: its training data named with its id."""
    path.mkdir()
    (path / "options.json").write_text(json.dumps({"galaug_run": 1, "task": "denoise", "config": {},
                                                   "degrade": degrade, "seed": seed, "data": str(train.path),
                                                   "data_id": train.id}))
    return path


def rerun(run, path, **options):
    """A copy of ``run`` (its trained model) whose options.json says ``options`` instead."""
    shutil.copytree(run, path)
    stored = json.loads((path / "options.json").read_text())
    (path / "options.json").write_text(json.dumps({**stored, **options}))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    train = write_dataset(root / "train.zarr", galaxy_images(40, bands=2, seed=0))
    val = write_dataset(root / "val.zarr", galaxy_images(12, bands=2, seed=1))
    other_val = write_dataset(root / "other-val.zarr", 3 * galaxy_images(12, bands=2, seed=2))
    run = new_run(root / "run", train)
    Denoise(TINY).train(train.path, run, degrade=SPEC, seed=0)
    return root, run, train, val, other_val


@pytest.fixture
def cli(galaug_plugins):
    import galaug_denoise

    assert galaug_plugins.register(galaug_denoise, name="denoise").status == "ok"
    return galaug_plugins


def test_every_baseline_improves_on_the_noisy_input():
    pipeline = parse_pipeline("psf:gaussian(sigma=1)|noise:gaussian(std=20)")
    train = torch.from_numpy(galaxy_images(24, bands=1, size=32, seed=0))
    test = torch.from_numpy(galaxy_images(16, bands=1, size=32, seed=1))
    noisy_train = pipeline.apply(train, derive_seeds(0, np.arange(24))).numpy()
    noisy_test = pipeline.apply(test, derive_seeds(1, np.arange(16))).numpy()
    psf = psf_kernels(pipeline, 1, 32, 32)
    assert psf.shape[1] % 2 == 1 and psf.sum() == pytest.approx(1)
    noisy_mse = np.mean((noisy_test - test.numpy()) ** 2)
    for name in BASELINES:
        tuned = tune(name, noisy_train, train.numpy(), psf=psf)
        assert tuned["param"] == BASELINES[name].param and len(tuned["values"]) == 1
        estimate = restore(name, noisy_test, tuned["values"], psf=psf)
        assert estimate.shape == noisy_test.shape
        assert np.mean((estimate - test.numpy()) ** 2) < 0.5 * noisy_mse, name


def test_the_parameters_depend_on_the_training_data_only(setup, tmp_path):
    _, run, train, val, other_val = setup
    names = ("gaussian", "wiener", "tv")
    first = Denoise(TINY).evaluate(run, val.path, seed=0, baselines=names)
    params = first["baselines"]["params"]
    assert set(params) == set(names) and set(params["tv"]["values"]) == {"g", "r"}
    tuning = first["baselines"]["tuning"]
    assert tuning["data"] == str(train.path) and tuning["data_id"] == train.id and tuning["n"] == 40
    # another test set and another evaluation seed: the same parameters, other scores
    second = Denoise(TINY).evaluate(run, other_val.path, seed=7, baselines=names)
    assert second["baselines"]["params"] == params
    assert second["summary"]["nominal"]["baselines"] != first["summary"]["nominal"]["baselines"]
    # the same model with other training data: other parameters
    brighter = write_dataset(tmp_path / "bright.zarr", 10 * galaxy_images(40, bands=2, seed=0))
    moved = rerun(run, tmp_path / "moved", data=str(brighter.path), data_id=brighter.id)
    third = Denoise(TINY).evaluate(moved, val.path, seed=0, baselines=names)
    assert third["baselines"]["params"] != params


def test_the_metrics_file_has_every_baseline_per_test_set(cli, setup, tmp_path):
    _, run, _, val, _ = setup
    out = tmp_path / "all.json"
    res = cli.invoke("task", "eval", "denoise", run, val.path, out, "--baselines", "all")
    assert res.exit_code == 0, res.output
    metrics = json.loads(out.read_text())["metrics"]
    assert list(metrics["baselines"]["params"]) == list(BASELINES)
    for name in TEST_SETS:
        assert list(metrics[name]["baselines"]) == list(BASELINES)
        for scores in metrics[name]["baselines"].values():
            assert set(scores) == {"mse", "psnr", "ssim", "bands"} and set(scores["bands"]) == {"g", "r"}
        summary = metrics["summary"][name]["baselines"]
        assert summary["tv"]["mse"] == pytest.approx(metrics[name]["baselines"]["tv"]["mse"], rel=1e-5)
    # the nominal inputs of the baselines are those of the model: the same input MSE either way
    res = cli.invoke("task", "eval", "denoise", run, val.path, tmp_path / "default.json")
    assert res.exit_code == 0, res.output
    default = json.loads((tmp_path / "default.json").read_text())["metrics"]
    assert list(default["summary"]["noise5x"]["baselines"]) == list(DEFAULT_BASELINES)
    assert default["baselines"]["params"]["tv"] == metrics["baselines"]["params"]["tv"]
    assert default["nominal"]["input"] == metrics["nominal"]["input"]
    res = cli.invoke("task", "eval", "denoise", run, val.path, tmp_path / "none.json", "--baselines", "none")
    assert res.exit_code == 0, res.output
    assert "baselines" not in json.loads((tmp_path / "none.json").read_text())["metrics"]["summary"]["nominal"]


def test_an_unknown_or_impossible_baseline_is_one_line_and_nothing_runs(cli, setup, tmp_path, monkeypatch):
    _, run, _, val, _ = setup
    calls = []
    real = Denoise.evaluate
    monkeypatch.setattr(Denoise, "evaluate", lambda self, *a, **kw: calls.append(1) or real(self, *a, **kw))
    out = tmp_path / "m.json"
    assert_user_error(cli.invoke("task", "eval", "denoise", run, val.path, out, "--baselines", "tv,median"),
                      "--baselines", "'median'", "nlmeans")
    assert not out.exists() and calls == []
    with pytest.raises(ParamError, match="baselines: unknown baseline 'median'"):
        Denoise(TINY).evaluate(run, val.path, baselines=["median"])
    # no PSF for the Wiener filter: an error when asked for, left out (with the reason) by default
    noise_only = rerun(run, tmp_path / "noise-only", degrade="noise:gaussian(std=10.0)")
    assert_user_error(cli.invoke("task", "eval", "denoise", noise_only, val.path, out, "--baselines", "wiener"),
                      "--baselines", "has no PSF for the Wiener filter", "--baselines=none")
    assert not out.exists()
    metrics = Denoise(TINY).evaluate(noise_only, val.path)
    assert "no PSF" in metrics["baselines"]["skipped"]["wiener"]
    assert list(metrics["summary"]["nominal"]["baselines"]) == ["gaussian", "tv", "wavelet"]
    # training data that are gone: asked for, an error; by default, none and the reason
    gone = rerun(run, tmp_path / "gone", data=str(tmp_path / "missing.zarr"))
    with pytest.raises(ParamError, match="is gone"):
        Denoise(TINY).evaluate(gone, val.path, baselines="tv")
    metrics = Denoise(TINY).evaluate(gone, val.path)
    assert set(metrics["baselines"]["skipped"]) == set(DEFAULT_BASELINES)
    assert "baselines" not in metrics["summary"]["nominal"]


def test_a_task_without_baselines_takes_none_only():
    class Plain(Task):
        name = "plain"

    assert baseline_names(Plain, None) is None and baseline_names(Plain, "none") == ()
    with pytest.raises(ParamError, match="task plain has no baseline 'tv' \\(it reports none\\)"):
        baseline_names(Plain, "tv")
    assert baseline_names(Denoise, "all") == tuple(BASELINES)
    assert baseline_names(Denoise, "wiener, tv") == ("wiener", "tv")


def test_the_experiment_table_and_the_report_show_the_baselines(tmp_path):
    from galaug.experiment import Arm, summarise
    from galaug.report import build_report

    out = tmp_path / "experiment"
    (out / "results").mkdir(parents=True)
    arms = (Arm("100% real"), Arm("5x gen", real="0", gen="5x"))
    for arm, model in zip(arms, (10.0, 12.0)):
        for seed, tv in ((0, 20.0), (1, 22.0)):
            summary = {"nominal": {"mse": model, "input_mse": 40.0, "baselines": {"tv": {"mse": tv, "psnr": 30.0}}}}
            (out / "results" / f"{arm.slug}-s{seed}.json").write_text(json.dumps(
                {"arm": {}, "seed": seed, "n_real": 1, "n_generated": 0, "metrics": {"summary": summary}}))
    result = summarise(out, arms, [0, 1], metric="mse")
    assert result["baselines"]["tv"]["nominal"] == {"mean": 21.0, "std": pytest.approx(np.std([20, 22, 20, 22],
                                                                                                 ddof=1)), "n": 4}
    table = (out / "results.md").read_text()
    assert "| 100% real | 10.0 ± 0.0 (n=2) |" in table and "| baseline: tv | 21.0 ± 1.2 (n=4) |" in table
    assert set(result["table"]) == {"100% real", "5x gen"}
    run = tmp_path / "task-run"
    run.mkdir()
    (run / "metrics-val.json").write_text(json.dumps({"task": "denoise", "run": "task-run", "data": "val.zarr",
                                                      "metrics": {"summary": summary}}))
    (tmp_path / "report.toml").write_text('[[section]]\ntitle = "Denoiser"\nrun = "task-run"\n')
    page = build_report(tmp_path / "report.toml", tmp_path / "report.html").read_text()
    assert "<th>input</th><th>tv</th></tr>" in page
    assert "<td>nominal</td><td>mse</td><td>12</td><td>40</td><td>22</td>" in page
