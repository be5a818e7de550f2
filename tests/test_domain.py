"""A task run records the units and flux scale of its training data; evaluating other units is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import galaxy_images
from test_cli import assert_user_error

import galaug
from galaug import GalaugError
from galaug.domain import FACTOR, compare_domains, data_domain
from galaug.kinds import Task
from galaug.runs import Run, evaluate_run, plan_training


class Mean(Task):
    """A 'task' that learns nothing: trains instantly, reports the mean pixel of the evaluation data."""

    name = "mean"

    def train(self, data, run_dir, *, degrade=None, device="cpu", seed=0, resume=False):
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        (run_dir / "checkpoints" / "ckpt-00000001.pt").write_bytes(b"trained")

    def evaluate(self, run_dir, data, *, degrade=None, device="cpu", seed=0):
        return {"summary": {"nominal": {"mean": float(galaug.open_dataset(data).read()["images"].mean())}}}


@pytest.fixture
def cli(galaug_plugins):
    galaug_plugins.plugin(galaug_register=lambda register: register.task(Mean))
    return galaug_plugins


def scaled(make_dataset, name: str, factor: float, *, unit: str | None = "nJy", seed: int = 0):
    """A dataset of galaxy images multiplied by ``factor``."""
    path = make_dataset(1, name=f"tmp-{name}").path.parent / name
    with galaug.create_dataset(path, bands=("g", "r", "i"), image_size=16, flux_unit=unit,
                               provenance=galaug.make_entry("test")) as w:
        w.append(galaxy_images(30, seed=seed) * factor)
    return galaug.open_dataset(path)


def test_the_domain_is_the_unit_and_the_median_peak_per_band(make_dataset):
    ds = scaled(make_dataset, "a.zarr", 1000.0)
    images = ds.read()["images"]
    domain = data_domain(ds)
    assert domain["flux_unit"] == "nJy" and domain["bands"] == ["g", "r", "i"]
    np.testing.assert_allclose(domain["peak"], np.median(images.max(axis=(2, 3)), axis=0), rtol=1e-5)
    other = dict(domain, peak=[p / (FACTOR * 1.5) for p in domain["peak"]])
    assert len(compare_domains(domain, other)) == 3
    assert compare_domains(domain, dict(domain, peak=[p / 5 for p in domain["peak"]])) == []  # within 10x
    assert compare_domains(domain, dict(domain, flux_unit="nanojansky")) == []  # the same unit, spelled otherwise
    assert compare_domains(domain, dict(domain, flux_unit="adu")) == ["flux unit adu, the training data's nJy"]
    assert compare_domains(domain, dict(domain, flux_unit=None)) == []  # unknown: nothing to compare


def test_task_eval_refuses_data_in_other_units_unless_allowed(cli, make_dataset, tmp_path):
    train = scaled(make_dataset, "train.zarr", 1000.0)
    same = scaled(make_dataset, "same.zarr", 1000.0, seed=1)
    unit_scale = scaled(make_dataset, "zero-one.zarr", 1e-3, seed=2)  # the same galaxies scaled to about 0..1
    plan = plan_training("task", "mean", train.path, manager=cli.manager)
    run = plan.run(plan.start(root=tmp_path / "runs"))
    assert Run.open(run.path).options["data_domain"]["peak"] == data_domain(train)["peak"]
    res = cli.invoke("task", "eval", "mean", run.path, same.path)
    assert res.exit_code == 0, res.output
    assert json.loads((run.path / "metrics-same.json").read_text())["domain"]["verdict"] == "same"
    res = cli.invoke("task", "eval", "mean", run.path, unit_scale.path)
    assert_user_error(res, "zero-one.zarr is not in the units run", "band g peaks at", "more than 10x",
                      "--allow-domain-shift uses it anyway")
    assert not (run.path / "metrics-zero-one.json").exists()
    with pytest.raises(GalaugError, match="allow_domain_shift uses it anyway"):
        evaluate_run(run, unit_scale.path, manager=cli.manager)
    res = cli.invoke("task", "eval", "mean", run.path, unit_scale.path, "--allow-domain-shift")
    assert res.exit_code == 0, res.output
    record = json.loads((run.path / "metrics-zero-one.json").read_text())["domain"]
    assert record["verdict"] == "shifted" and record["overridden"] is True and len(record["problems"]) == 3


def test_a_run_without_a_recorded_domain_is_evaluated_unchecked(cli, make_dataset, tmp_path):
    train = scaled(make_dataset, "train.zarr", 1000.0)
    plan = plan_training("task", "mean", train.path, manager=cli.manager)
    run = plan.run(plan.start(root=tmp_path / "runs"))
    options = json.loads((run.path / "options.json").read_text())
    del options["data_domain"]  # a run made before galaug recorded it
    (run.path / "options.json").write_text(json.dumps(options))
    _, path = evaluate_run(Run.open(run.path), scaled(make_dataset, "x.zarr", 1e-3).path, manager=cli.manager)
    assert json.loads(path.read_text())["domain"]["verdict"] == "unchecked"


def test_the_experiment_refuses_a_validation_set_in_other_units_before_any_work(cli, make_dataset, tmp_path):
    from galaug.experiment import load_experiment, run_experiment

    real = scaled(make_dataset, "real.zarr", 1000.0)
    val = scaled(make_dataset, "val.zarr", 1000.0, unit="adu", seed=1)
    toml = tmp_path / "exp.toml"
    toml.write_text(f'task = "mean"\nreal = "{real.path}"\nval = "{val.path}"\nseeds = [0]\nout = "exp"\n'
                    '[[arms]]\nname = "real"\nreal = "1.0"\n')
    with pytest.raises(GalaugError, match="flux unit adu, the training data's nJy; allow_domain_shift = true in "
                                          "the experiment file uses it anyway"):
        run_experiment(*load_experiment(toml), manager=cli.manager)
    assert not (tmp_path / "exp").exists()
