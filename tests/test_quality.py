"""The quality gate: training statistics in every generator run; generate, mix and experiment refuse outliers;
show stretches each origin on its own; the report flags results worse than the task's input."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import galaug
from galaug import quality
from galaug.checkpoints import CheckpointStore
from galaug.errors import GalaugError
from galaug.generators import generate
from galaug.kinds import Generator, GeneratorModel, Layout, Task
from galaug.runs import DATA_STATS, Run, Training, plan_training

from conftest import galaxy_images
from test_cli import assert_user_error
from test_figures import one_format

HERE = Path(__file__).parent
SHIPPED = HERE.parent / "examples" / "checkpoints"


# -- a third-party generator that can go wrong -----------------------------------------------

@dataclasses.dataclass
class FakeConfig:
    #: what the samples are: "galaxies" (like the test data), "huge" (1e9 everywhere) or "nan"
    output: str = "galaxies"


class FakeModel(GeneratorModel):
    z_dim = w_dim = 2

    def __init__(self, output: str, layout: Layout, step: int) -> None:
        self.output, self.layout, self.step = output, layout, step

    def sample(self, n=None, *, seed=0, rows=None, truncation=None):
        rows = list(range(n) if rows is None else rows)
        images = np.concatenate([galaxy_images(1, bands=len(self.layout.bands), size=self.layout.image_size,
                                               seed=1000 * seed + r) for r in rows])
        if self.output == "huge":
            images[:] = 1e9
        elif self.output == "nan":
            images[:, :, 0, 0] = np.nan
        z = torch.zeros(len(rows), 2)
        return {"images": torch.as_tensor(images), "z": z, "w": z}


class Fake(Generator):
    """Trains nothing (one checkpoint through galaug's scaffolding); samples what its config says."""

    name = "fake"
    version = "0.1"
    Config = FakeConfig
    seen_stats: bool | None = None

    def train(self, data, run_dir, *, steps=None, device="cpu", seed=0, resume=False):
        Fake.seen_stats = (Path(run_dir) / DATA_STATS).is_file()  # written before training starts
        ds = galaug.open_dataset(data)
        store = CheckpointStore(run_dir, format="test-fake/1")
        with Training(run_dir, store=store, counter="step", total=1, resume=resume, seed=seed) as run:
            run.resume_state()
            run.save({"bands": list(ds.bands), "size": ds.image_shape[1]}, number=1, keep=1)

    @classmethod
    def load(cls, run_dir, *, device="cpu", checkpoint=None):
        run = Run.open(run_dir, kind="generator")
        state = CheckpointStore(run_dir, format="test-fake/1").load()
        layout = Layout(bands=tuple(state["bands"]), image_size=state["size"], pixel_scale=None, flux_unit=None)
        return FakeModel(run.config(cls).output, layout, state["step"])


class Nothing(Task):
    name = "nothing"

    def train(self, data, run_dir, *, degrade=None, device="cpu", seed=0, resume=False):
        raise AssertionError("the experiment should have stopped before training")

    def evaluate(self, run_dir, data, *, degrade=None, device="cpu", seed=0):
        return {}


@pytest.fixture
def cli(galaug_plugins):
    galaug_plugins.plugin(galaug_register=lambda register: (register.generator(Fake), register.task(Nothing)))
    return galaug_plugins


@pytest.fixture
def real(make_dataset):
    return make_dataset(60, name="real.zarr")


def fake_run(cli, real, tmp_path, output: str) -> Path:
    plan = plan_training("generator", "fake", real.path, manager=cli.manager, sets=[f"output={output}"])
    return plan.run(plan.start(root=tmp_path / "runs")).path


# -- statistics -------------------------------------------------------------------------------

def test_statistics_stream_in_bounded_memory_and_do_not_depend_on_blocks(make_dataset):
    ds = make_dataset(50, bands=("g", "r"))
    whole = quality.dataset_stats(ds)
    assert whole["sampling"]["every_pixel"] and whole["n"] == 50 and whole["data_id"] == ds.id
    assert quality.dataset_stats(ds, block_rows=7) == whole
    json.dumps(whole, allow_nan=False)  # JSON as it is
    x = ds.read(fields=["images"])["images"]
    g = whole["bands_stats"]["g"]
    assert g["pixels"]["p99.9"] == pytest.approx(np.quantile(x[:, 0], 0.999))
    assert g["pixels"]["max"] == pytest.approx(x[:, 0].max())
    assert g["flux"]["p50"] == pytest.approx(np.median(x[:, 0].sum(axis=(1, 2), dtype=np.float64)))
    assert 1 < whole["size"]["p50"] < 8 and whole["size"]["undefined"] == 0
    # subsampled: a few pixels of a few images, chosen by (seed, row) alone
    small = quality.dataset_stats(ds, max_pixels=300, max_images=20)
    assert not small["sampling"]["every_pixel"] and small["sampling"]["pixels_per_band"] <= 40 * 20
    assert quality.dataset_stats(ds, max_pixels=300, max_images=20, block_rows=3)["bands_stats"] == \
        small["bands_stats"]
    # two halves seen by two accumulators and merged = one pass
    a, b = (quality.StatsAccumulator(50, ds.bands, ds.image_shape, max_pixels=300, max_images=20) for _ in "ab")
    a.add(x[:31], np.arange(31))
    b.add(x[31:], np.arange(31, 50))
    a.merge(b.state())
    assert a.result()["bands_stats"] == small["bands_stats"]


def test_the_rule_is_relative_to_the_sky_and_reports_every_statistic():
    rng = np.random.default_rng(0)
    # training data on a sky of -100 whose 99.9th percentile is negative: "10x p99.9" would mean nothing
    train = (rng.normal(-100, 1, (40, 1, 16, 16)) + 30 * galaxy_images(40, bands=1, seed=1) / 100).astype(np.float32)

    def stats(x):
        acc = quality.StatsAccumulator(len(x), ["r"], x.shape[1:])
        acc.add(x, np.arange(len(x)))
        return acc.result()

    t = stats(train)
    assert t["bands_stats"]["r"]["pixels"]["p99.9"] < 0
    ok = quality.compare(stats(train[::-1].copy()), t)
    assert ok.passed and not ok.failures
    assert {r["statistic"] for r in ok.rows} >= {"non-finite pixels", "pixel p99.9", "pixel p0.1", "flux p50",
                                                 "size p50"}
    assert all({"generated", "training", "low", "high", "status"} <= set(r) for r in ok.rows)
    bright = train.copy()
    bright[0, :, 8, 8] += 5000  # one hot pixel in the whole set: far above the tail, but not at p99.9
    tp = t["bands_stats"]["r"]["pixels"]
    limit = tp["p50"] + quality.FACTOR * (tp["p99.9"] - tp["p50"])
    hot = train.copy()
    hot[:, :, :2, :] = limit + 10  # 2 rows of 16: above p99.9
    bad = quality.compare(stats(hot), t)
    assert not bad.passed and "band r: pixel p99.9" in bad.failures[0]
    one_hot = quality.compare(stats(bright), t)
    assert one_hot.passed  # a single hot pixel: reported, not failed
    assert any(r["statistic"] == "pixel max" and r["status"] == "outside" for r in one_hot.rows)


# -- runs record their training statistics ----------------------------------------------------

def test_a_generator_run_writes_its_training_statistics_before_training(cli, real, tmp_path):
    run = fake_run(cli, real, tmp_path, "galaxies")
    assert Fake.seen_stats is True
    stats = json.loads((run / DATA_STATS).read_text())
    assert stats == quality.dataset_stats(real) | {"data": stats["data"]} and stats["data_id"] == real.id
    assert quality.run_stats(run) == (stats, "run")


def test_a_run_without_statistics_computes_them_from_its_data_or_says_it_has_none(cli, make_dataset, tmp_path):
    real = make_dataset(30, name="moving.zarr")
    run = fake_run(cli, real, tmp_path, "galaxies")
    (run / DATA_STATS).unlink()  # a run from before the gate
    stats, source = quality.run_stats(run)
    assert source == "computed" and stats["data_id"] == real.id and (run / DATA_STATS).is_file()
    (run / DATA_STATS).unlink()
    shutil.rmtree(real.path)
    assert quality.run_stats(run) == (None, f"{run} has no {DATA_STATS} and its training data {real.path} is gone")
    ds = generate(run, tmp_path / "g.zarr", 8, manager=cli.manager)
    assert ds.provenance[-1]["quality"]["verdict"] == "unchecked"


# -- generate --------------------------------------------------------------------------------

def test_generate_refuses_a_generator_that_outputs_1e9_and_allow_outliers_overrides(cli, real, tmp_path):
    run = fake_run(cli, real, tmp_path, "huge")
    before = sorted(os.listdir(tmp_path))
    res = cli.invoke("generate", "fake", run, tmp_path / "gen.zarr", "-n", 16)
    assert_user_error(res, "band g: pixel p99.9 = 1e+09", "training", "(allowed ", "nothing was written",
                      "--allow-outliers overrides")
    assert sorted(os.listdir(tmp_path)) == before  # no output, no temporary
    res = cli.invoke("generate", "fake", run, tmp_path / "gen.zarr", "-n", 16, "--allow-outliers")
    assert res.exit_code == 0, res.output
    assert "quality gate: fail (overridden)" in res.output
    record = galaug.open_dataset(tmp_path / "gen.zarr").provenance[-1]["quality"]
    assert record["verdict"] == "fail" and record["overridden"] is True and record["statistics"] == "run"
    p999 = next(r for r in record["rows"] if r["statistic"] == "pixel p99.9" and r["band"] == "g")
    assert p999["generated"] == 1e9 and p999["status"] == "fail" and p999["training"] < 1e3


def test_generate_refuses_non_finite_pixels(cli, real, tmp_path):
    run = fake_run(cli, real, tmp_path, "nan")
    res = cli.invoke("generate", "fake", run, tmp_path / "gen.zarr", "-n", 10)
    assert_user_error(res, "band g: 10 non-finite pixels (training: 0)")
    assert not (tmp_path / "gen.zarr").exists()
    with pytest.raises(quality.QualityError, match="allow_outliers overrides the gate"):
        generate(run, tmp_path / "gen.zarr", 10, manager=cli.manager)


def test_the_shipped_bulgedisk_generator_passes(galaug_plugins, tmp_path):
    import galaug_alae

    galaug_plugins.register(galaug_alae, name="alae")
    run = SHIPPED / "alae-bulgedisk-tiny"
    assert (run / DATA_STATS).is_file() and (SHIPPED / "alae-sersic-tiny" / DATA_STATS).is_file()
    ds = generate(run, tmp_path / "gen.zarr", 64, batch_size=32)
    record = ds.provenance[-1]["quality"]
    assert record["verdict"] == "pass" and record["overridden"] is False and record["statistics"] == "run"
    assert not (run / "data_stats.json.tmp").exists()


# -- mix and experiment ----------------------------------------------------------------------

def test_mix_refuses_a_generated_set_that_failed_and_applies_the_gate_to_a_generator(cli, real, tmp_path):
    run = fake_run(cli, real, tmp_path, "huge")
    assert cli.invoke("generate", "fake", run, tmp_path / "bad.zarr", "-n", 30, "--allow-outliers").exit_code == 0
    args = ["mix", tmp_path / "mix.zarr", "--real-data", real.path, "--gen", "0.5"]
    res = cli.invoke(*args, "--gen-data", tmp_path / "bad.zarr")
    assert_user_error(res, "bad.zarr failed the quality gate when it was generated", "--allow-outliers uses it")
    assert not (tmp_path / "mix.zarr").exists()
    res = cli.invoke(*args, "--gen-data", tmp_path / "bad.zarr", "--allow-outliers")
    assert res.exit_code == 0, res.output
    mixed = galaug.open_dataset(tmp_path / "mix.zarr")
    assert mixed.provenance[-1]["quality"]["overridden"] is True
    assert quality.failed_gate(mixed) is not None  # a mix of it carries the failure on
    # generating on the fly: the gate sees the images
    res = cli.invoke("mix", tmp_path / "fly.zarr", "--real-data", real.path, "--gen", "20", "--generator", run,
                     "--device", "cpu")
    assert_user_error(res, "pixel p99.9 = 1e+09", "--allow-outliers")
    assert not (tmp_path / "fly.zarr").exists()
    good = fake_run(cli, real, tmp_path / "good", "galaxies")
    res = cli.invoke("mix", tmp_path / "fly.zarr", "--real-data", real.path, "--gen", "20", "--generator", good,
                     "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "quality gate: pass" in res.output
    assert galaug.open_dataset(tmp_path / "fly.zarr").provenance[-1]["quality"]["verdict"] == "pass"


def test_the_experiment_refuses_a_failed_generated_set_before_any_work(cli, real, make_dataset, tmp_path):
    from galaug.experiment import load_experiment, run_experiment

    run = fake_run(cli, real, tmp_path, "huge")
    generate(run, tmp_path / "bad.zarr", 30, manager=cli.manager, allow_outliers=True)
    val = make_dataset(10, name="val.zarr", seed=3)
    toml = tmp_path / "exp.toml"
    toml.write_text(f'task = "nothing"\nreal = "{real.path}"\nval = "{val.path}"\ngen = "bad.zarr"\n'
                    'seeds = [0]\nout = "exp"\n')
    with pytest.raises(GalaugError, match="allow_outliers = true in the experiment file uses it anyway"):
        run_experiment(*load_experiment(toml), manager=cli.manager)
    assert not (tmp_path / "exp").exists()
    config, arms, task_config = load_experiment(toml)
    assert config.allow_outliers is False
    toml.write_text(toml.read_text() + "allow_outliers = true\n")
    assert load_experiment(toml)[0].allow_outliers is True


def test_the_experiment_refuses_sets_of_which_only_one_has_a_pixel_scale(cli, make_dataset, tmp_path):
    import astropy.units as u

    from galaug.experiment import load_experiment, run_experiment

    real = make_dataset(20, name="scaled.zarr", pixel_scale=0.2 * u.arcsec)
    make_dataset(20, name="gen.zarr", seed=1)
    val = make_dataset(10, name="val.zarr", seed=3, pixel_scale=0.2 * u.arcsec)
    toml = tmp_path / "exp.toml"
    toml.write_text(f'task = "nothing"\nreal = "{real.path}"\nval = "{val.path}"\ngen = "gen.zarr"\n'
                    'seeds = [0]\nout = "exp"\n')
    with pytest.raises(GalaugError, match="assume_same_scale = true in the experiment file mixes them anyway"):
        run_experiment(*load_experiment(toml), manager=cli.manager)
    assert not (tmp_path / "exp").exists()


# -- two processes ---------------------------------------------------------------------------

@pytest.mark.slow
def test_two_processes_reach_the_same_verdict(tmp_path):
    """A shipped run whose statistics say its data were 1000x fainter: every rank refuses; overridden, the
    record equals one process's."""
    from test_distributed import ENV, galaug_cli

    run = tmp_path / "run"
    shutil.copytree(SHIPPED / "alae-sersic-tiny", run)
    stats = json.loads((run / DATA_STATS).read_text())
    for key in ("min", "p0.1", "p1", "p50", "p99", "p99.9", "max"):
        stats["bands_stats"]["r"]["pixels"][key] /= 1000
    (run / DATA_STATS).write_text(json.dumps(stats))
    args = ["generate", "alae", run, tmp_path / "g.zarr", "-n", "300", "--device", "cpu"]
    res = galaug_cli(*args, "--nproc", "2")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "band r: pixel p99.9" in lines[0], res.stderr
    assert not (tmp_path / "g.zarr").exists()
    assert galaug_cli(*args, "--nproc", "2", "--allow-outliers").returncode == 0
    assert galaug_cli("generate", "alae", run, tmp_path / "one.zarr", "-n", "300", "--device", "cpu",
                      "--allow-outliers", env=ENV).returncode == 0
    two = galaug.open_dataset(tmp_path / "g.zarr").provenance[-1]["quality"]
    one = galaug.open_dataset(tmp_path / "one.zarr").provenance[-1]["quality"]
    assert two == one and two["verdict"] == "fail" and two["overridden"] is True


# -- show and report -------------------------------------------------------------------------

def test_show_stretches_each_origin_on_its_own(cli, real, tmp_path):
    from galaug.viz import image_grid

    good = galaxy_images(6, bands=1, seed=4)
    bad = good * 1e7
    images = np.concatenate([good, bad])
    origins = np.array([0] * 6 + [1] * 6)
    alone = image_grid(good, [0])
    together = image_grid(images, [0], groups=origins)
    np.testing.assert_allclose(together[:6], alone)  # the real tiles do not see the generated outliers
    assert image_grid(images, [0])[:6].mean() < 0.2 * alone.mean()  # one shared stretch blackens them
    run = fake_run(cli, real, tmp_path, "galaxies")
    generate(run, tmp_path / "gen.zarr", 20, manager=cli.manager)
    cli.invoke("mix", tmp_path / "mix.zarr", "--real-data", real.path, "--gen-data", tmp_path / "gen.zarr",
               "--gen", "20")
    res = cli.invoke("show", tmp_path / "mix.zarr", tmp_path / "mix.png")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "mix.png").stat().st_size > 1000


def test_the_report_warns_about_results_worse_than_the_input(tmp_path):
    from galaug.report import build_report, worse_than_input

    assert worse_than_input("mse", 2.3e14, 1600) and not worse_than_input("mse", 10, 1600)
    assert worse_than_input("psnr", 10, 20) and not worse_than_input("nominal.psnr", 30, 20)
    assert worse_than_input("mse", float("nan"), 1600)
    exp = tmp_path / "experiment"
    exp.mkdir()
    (exp / "results.md").write_text("mse, mean over seeds\n\n| arm | nominal |\n|---|---|\n| 100% real | 12 |\n"
                                    "| 5x gen | 2.3e+14 |\n")
    rows = [{"arm": arm, "seed": 0, "test_set": "nominal", "metric": m, "value": v}
            for arm, mse in (("100% real", 12.0), ("5x gen", 2.3e14))
            for m, v in (("mse", mse), ("input_mse", 1600.0))]
    (exp / "results.json").write_text(json.dumps({"metric": "mse", "rows": rows}))
    from galaug.viz import save_grid

    save_grid(np.ones((1, 1, 4, 4), np.float32), exp / "results.png", channels=[0])
    run = tmp_path / "task-run"
    run.mkdir()
    (run / "metrics-val.json").write_text(json.dumps({
        "task": "denoise", "run": "task-run", "data": "val.zarr",
        "metrics": {"summary": {"nominal": {"mse": 5.0, "input_mse": 40.0, "psnr": 30.0, "input_psnr": 21.0},
                                "noise5x": {"mse": 900.0, "input_mse": 800.0, "psnr": 18.0, "input_psnr": 19.0}}}}))
    (tmp_path / "report.toml").write_text('[[section]]\ntitle = "Experiment"\nexperiment = "experiment"\n\n'
                                          '[[section]]\ntitle = "Denoiser"\nrun = "task-run"\n')
    page = build_report(tmp_path / "report.toml", tmp_path / "report.html").read_text()
    assert page.count('class="warning"') == 3  # the top of the page, the experiment, the run
    said = re.search(r"5x gen, nominal: mse (\S+) is worse than the input&#x27;s (\S+)</li>", page)
    assert said and float(said[1]) == 2.3e14 and one_format(*said.groups())  # never 2.3e+14 beside 1600
    assert "⚠ 5x gen" in page and "⚠ 100% real" not in page
    said = re.search(r"val.zarr, noise5x: mse (\S+) is worse than the input&#x27;s (\S+)</li>", page)
    assert said and float(said[1]) == 900 and float(said[2]) == 800 and one_format(*said.groups())
    assert "val.zarr, nominal" not in page


def test_the_report_shows_the_gate_verdict_of_generated_sets(cli, real, tmp_path):
    from galaug.report import build_report

    good, bad = fake_run(cli, real, tmp_path, "galaxies"), fake_run(cli, real, tmp_path, "huge")
    assert cli.invoke("generate", "fake", good, tmp_path / "good.zarr", "-n", 16).exit_code == 0
    res = cli.invoke("generate", "fake", bad, tmp_path / "bad.zarr", "-n", 16, "--allow-outliers")
    assert res.exit_code == 0, res.output
    (tmp_path / "report.toml").write_text('[[section]]\ntitle = "Gate"\nquality = ["good.zarr", "bad.zarr"]\n')
    page = build_report(tmp_path / "report.toml", tmp_path / "report.html").read_text()
    assert "<strong>good.zarr</strong>: quality gate: pass" in page
    assert "<strong>bad.zarr</strong>: quality gate: fail (overridden)" in page
    assert "bad.zarr failed the quality gate (overridden)" in page and page.count('class="warning"') == 2
    assert "| pixel p99.9 | g |" not in page and "<td>pixel p99.9</td>" in page  # the failing rows, as a table
    (tmp_path / "report.toml").write_text('[[section]]\ntitle = "Gate"\nquality = "real.zarr"\n')
    page = build_report(tmp_path / "report.toml", tmp_path / "report.html", overwrite=True).read_text()
    assert "<strong>real.zarr</strong>: quality gate: not run" in page and 'class="warning"' not in page
