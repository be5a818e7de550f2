"""The ratio experiment machinery, with a small real task: predict the clean image as the mean training image."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch

import galaug
from galaug import open_dataset
from galaug.kinds import Task

from conftest import galaxy_images
from test_cli import assert_user_error


@dataclasses.dataclass
class MeanConfig:
    shrink: float = 1.0


class MeanImage(Task):
    """Predicts every image as the mean training image; scored by MSE on nominal and brighter test sets."""

    name = "mean-image"
    Config = MeanConfig
    calls: list = []

    def train(self, data, run_dir, *, degrade=None, device="cpu", seed=0, resume=False):
        MeanImage.calls.append(str(run_dir))
        images = open_dataset(data).read()["images"]
        torch.save({"mean": torch.from_numpy(images.mean(0) * self.config.shrink)}, run_dir / "mean.pt")

    def evaluate(self, run_dir, data, *, degrade=None, device="cpu", seed=0):
        mean = torch.load(run_dir / "mean.pt", weights_only=True)["mean"].numpy()
        images = open_dataset(data).read()["images"]
        return {"summary": {"nominal": {"model": {"mse": float(((images - mean) ** 2).mean())}},
                            "bright": {"model": {"mse": float(((2 * images - mean) ** 2).mean())}}}}


@pytest.fixture
def setup(galaug_plugins, make_dataset, tmp_path):
    galaug_plugins.plugin(galaug_register=lambda register: register.task(MeanImage))
    real = make_dataset(40, name="real.zarr", seed=0)
    make_dataset(20, name="val.zarr", seed=1)
    with galaug.create_dataset(tmp_path / "gen.zarr", bands=real.bands, image_size=16,
                               provenance=galaug.make_entry("generate")) as w:
        w.append(galaxy_images(200, seed=5) * 3, origin=1)  # generated images 3x too bright: a bad generator
    (tmp_path / "exp.toml").write_text(
        'task = "mean-image"\nreal = "real.zarr"\nval = "val.zarr"\ngen = "gen.zarr"\nseeds = [0, 1]\n'
        'out = "exp"\nmetric = "mse"\n[task_config]\nshrink = 1.0\n')
    MeanImage.calls.clear()
    return galaug_plugins, tmp_path


def test_ratio_experiment_runs_every_arm_and_seed_and_resumes(setup):
    cli, tmp = setup
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml")
    assert res.exit_code == 0, res.output
    assert len(MeanImage.calls) == 7 * 2
    results = json.loads((tmp / "exp" / "results.json").read_text())
    table = results["table"]
    assert results["metric"] == "model.mse" and set(results["test_sets"]) == {"nominal", "bright"}
    assert list(table) == ["100% real", "10% real", "5x gen", "5x gen + 100% real", "5x gen + 10% real",
                           "alpha 0.5", "alpha 0.8"]
    assert table["5x gen"]["nominal"]["mean"] > table["100% real"]["nominal"]["mean"]  # the bad generator hurts
    assert table["100% real"]["nominal"]["n"] == 2
    with open(tmp / "exp" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["seed"] for r in rows} == {"0", "1"}
    assert [r for r in rows if r["arm"] == "5x gen + 10% real"][0]["n_generated"] == "200"
    assert "| 100% real |" in (tmp / "exp" / "results.md").read_text()
    assert (tmp / "exp" / "results.png").stat().st_size > 5000
    assert "100% real" in res.output  # the table is printed
    # a second run skips every finished pair
    MeanImage.calls.clear()
    (tmp / "exp" / "results" / "10-real-s1.json").unlink()  # as if interrupted there
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml")
    assert res.exit_code == 0 and len(MeanImage.calls) == 1 and "done before, skipped" in res.output


def test_custom_arms(setup):
    cli, tmp = setup
    text = (tmp / "exp.toml").read_text() + '\n[[arms]]\nname = "all real"\nreal = "1.0"\n' \
        '\n[[arms]]\nname = "gen 1x"\nreal = "0"\ngen = "1x"\n'
    (tmp / "exp.toml").write_text(text)
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml", "--seeds", "3")
    assert res.exit_code == 0, res.output
    assert list(json.loads((tmp / "exp" / "results.json").read_text())["table"]) == ["all real", "gen 1x"]


@pytest.mark.parametrize("arm, message", [
    ('real = "1"', "arm 'a': real 1 is ambiguous: write 1.0 or 100% for the whole set, or '1 image' (n=1)"),
    ("real = 1", "arm 'a': real 1 is ambiguous"),
    ('real = "0"\ngen = "1"', "arm 'a': gen 1 is ambiguous: write 1x for as many as the real set, 1.0 or 100% "
                              "for all of the gen set, or '1 image' (n=1) for one image"),
    ('real = "lots"', "arm 'a': real must be a fraction (0.2)"),
])
def test_an_arm_with_a_bare_one_is_refused_before_any_work(setup, arm, message):
    cli, tmp = setup
    (tmp / "exp.toml").write_text((tmp / "exp.toml").read_text() + '\n[[arms]]\nname = "ok"\nreal = "1.0"\n'
                                  f'\n[[arms]]\nname = "a"\n{arm}\n')
    assert_user_error(cli.invoke("experiment", "ratios", tmp / "exp.toml"), message)
    assert not (tmp / "exp").exists() and not MeanImage.calls


def test_arms_take_the_whole_set_or_one_image(setup):
    cli, tmp = setup
    (tmp / "exp.toml").write_text((tmp / "exp.toml").read_text() + '\n[[arms]]\nname = "all"\nreal = 1.0\n'
                                  '\n[[arms]]\nname = "100%"\nreal = "100%"\ngen = "1 image"\n'
                                  '\n[[arms]]\nname = "one"\nreal = "n=1"\ngen = "1x"\n')
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml", "--seeds", "0")
    assert res.exit_code == 0, res.output
    with open(tmp / "exp" / "results.csv") as f:
        counts = {r["arm"]: (r["n_real"], r["n_generated"]) for r in csv.DictReader(f)}
    assert counts == {"all": ("40", "0"), "100%": ("40", "1"), "one": ("1", "40")}


@pytest.mark.parametrize("text, message", [
    ('task = "mean-image"\nval = "val.zarr"\n', "'real' is required"),
    ('task = "mean-image"\nreal = "real.zarr"\nval = "val.zarr"\nepochs = 3\n', "unknown config key 'epochs'"),
    ('task = "nope"\nreal = "real.zarr"\nval = "val.zarr"\ngen = "gen.zarr"\n', "unknown task plugin 'nope'"),
    ('task = "mean-image"\nreal = "real.zarr"\nval = "val.zarr"\n', "neither gen nor generator"),
    ('task = "mean-image"\nreal = "real.zarr"\nval = "val.zarr"\ngen = "gen.zarr"\ndegrade = "psf:blur(x=1)"\n',
     "unknown degradation 'psf:blur'"),
    ('task = "mean-image"\nreal = "real.zarr"\nval = "val.zarr"\ngen = "gen.zarr"\n[task_config]\nshrnk = 1\n',
     "unknown config key 'shrnk'"),
    ('task = ', "not valid TOML"),
])
def test_bad_experiment_files(setup, text, message):
    cli, tmp = setup
    (tmp / "bad.toml").write_text(text)
    assert_user_error(cli.invoke("experiment", "ratios", tmp / "bad.toml"), message)
    assert not (tmp / "exp").exists()
