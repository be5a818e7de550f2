"""The experiment's oracle arms, the usefulness of each generator, several generators, and the summary in words."""

from __future__ import annotations

import dataclasses
import json
import re

import astropy.units as u
import numpy as np
import pytest

import galaug
from galaug import open_dataset
from galaug.errors import ParamError
from galaug.experiment_summary import SPREAD_RULE, summary_text, table_format, usefulness
from galaug.kinds import Layout, Simulator, Task

from test_cli import assert_user_error
from test_experiment import MeanImage, setup  # noqa: F401  (the fixture)


@dataclasses.dataclass
class BlobsConfig:
    image_size: int = 16
    noise: float = 1.0


class Blobs(Simulator):
    """Round exponential blobs of random flux, size and position, with Gaussian noise: row r depends on (seed, r)."""

    name = "blobs"
    version = "1.0"
    Config = BlobsConfig

    def layout(self):
        return Layout(bands=("g", "r", "i"), image_size=self.config.image_size, pixel_scale=0.2 * u.arcsec,
                      flux_unit="adu")

    def draw(self, rows, *, seed):
        size = self.config.image_size
        y, x = np.mgrid[:size, :size] - (size - 1) / 2
        out = np.empty((len(rows), 3, size, size), np.float32)
        for i, row in enumerate(rows):
            rng = np.random.default_rng([seed, int(row)])
            flux, r, dx, dy = rng.uniform(20, 200), rng.uniform(1, 4), *rng.uniform(-3, 3, 2)
            profile = np.exp(-np.hypot(x - dx, y - dy) / r)
            for b in range(3):
                out[i, b] = (1 + b) * flux * profile + rng.normal(0, self.config.noise, (size, size))
        return out, None


class FluxMean(Task):
    """Predicts every image as the flux-weighted mean training image.

    An image weighs its total flux above one standard deviation of the sum
    of unit pixel noise, so galaxies carry the estimate and pure noise next
    to nothing: more galaxies help, noise does not.
    """

    name = "flux-mean"
    calls: list = []

    def train(self, data, run_dir, *, degrade=None, device="cpu", seed=0, resume=False):
        FluxMean.calls.append(str(run_dir))
        images = open_dataset(data).read()["images"].astype(np.float64)
        w = np.clip(images.sum((1, 2, 3)) - np.sqrt(images[0].size), 0, None)
        np.save(run_dir / "mean.npy", (w[:, None, None, None] * images).sum(0) / w.sum())

    def evaluate(self, run_dir, data, *, degrade=None, device="cpu", seed=0):
        mean = np.load(run_dir / "mean.npy")
        images = open_dataset(data).read()["images"]
        return {"summary": {"nominal": {"model": {"mse": float(((images - mean) ** 2).mean())}},
                            "bright": {"model": {"mse": float(((2 * images - 2 * mean) ** 2).mean())}}}}


ARMS = '[[arms]]\nname = "10% real"\nreal = "0.1"\n\n[[arms]]\nname = "10% real + 5x gen"\nreal = "0.1"\ngen = "5x"\n'


@pytest.fixture
def simulated(galaug_plugins, tmp_path):
    """A real set simulated by ``blobs`` (seed 0) and split; a set of pure noise; an experiment file with the oracle."""
    from galaug.data.ops import split_dataset
    from galaug.sources.simulate import simulate

    galaug_plugins.plugin(galaug_register=lambda register: (register.source(Blobs), register.task(FluxMean)))
    simulate(Blobs(), tmp_path / "all.zarr", 60, seed=0)
    split_dataset(tmp_path / "all.zarr", tmp_path / "real.zarr", tmp_path / "val.zarr", val=20, seed=0)
    with galaug.create_dataset(tmp_path / "noise.zarr", bands=("g", "r", "i"), image_size=16,
                               pixel_scale=0.2 * u.arcsec, flux_unit="adu",
                               provenance=galaug.make_entry("generate")) as w:
        w.append(np.random.default_rng(9).normal(0, 1, (200, 3, 16, 16)).astype(np.float32), origin=1)
    (tmp_path / "exp.toml").write_text('task = "flux-mean"\nreal = "real.zarr"\nval = "val.zarr"\n'
                                       'generators = {noise = "noise.zarr"}\noracle = true\nseeds = [0, 1, 2]\n'
                                       f'out = "exp"\n\n{ARMS}')
    FluxMean.calls.clear()
    return galaug_plugins, tmp_path


def _usefulness(out, generator, test_set="nominal"):
    rows = json.loads((out / "results.json").read_text())["usefulness"]
    return next(r for r in rows if r["generator"] == generator and r["test_set"] == test_set)


def test_usefulness_is_one_for_the_oracle_itself_and_about_zero_for_noise(simulated):
    cli, tmp = simulated
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml")
    assert res.exit_code == 0, res.output
    assert len(FluxMean.calls) == 3 * 3  # 10% real; + 5x noise; + 5x oracle
    oracle = open_dataset(tmp / "exp" / "oracle.zarr")
    drawn = oracle.provenance[0]
    assert (drawn["plugin"], drawn["seed"], len(oracle)) == ("source:blobs", 1, 200)  # 5x the real set, seed not 0
    assert oracle.bands == ("g", "r", "i") and oracle.pixel_scale == 0.2 * u.arcsec and oracle.flux_unit == "adu"
    results = json.loads((tmp / "exp" / "results.json").read_text())
    assert results["oracle"]["seed"] == 1 and results["oracle"]["seeds_avoided"] == [0]
    assert list(results["table"]) == ["10% real", "10% real + 5x gen", "10% real + 5x gen [oracle]"]
    table = results["table"]
    assert table["10% real + 5x gen [oracle]"]["nominal"]["mean"] < table["10% real"]["nominal"]["mean"]
    # the oracle set itself as a generator: exactly the oracle's gain; the oracle set is reused, not drawn again
    text = (tmp / "exp.toml").read_text().replace('{noise = "noise.zarr"}',
                                                  '{noise = "noise.zarr", same = "exp/oracle.zarr"}')
    (tmp / "exp.toml").write_text(text)
    FluxMean.calls.clear()
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml")
    assert res.exit_code == 0, res.output
    assert "oracle.zarr reused" in res.output and len(FluxMean.calls) == 2 * 3  # [noise] and [same] rows only
    out = tmp / "exp"
    same, noise = _usefulness(out, "same"), _usefulness(out, "noise")
    assert same["value"] == pytest.approx(1.0) and same["spread"] == pytest.approx(0.0, abs=1e-9)
    assert abs(noise["value"]) < 0.1 and noise["spread"] is not None
    md = (out / "results.md").read_text()
    assert md.startswith("Best arm by model.mse (lower is better): ")
    assert "| 10% real + 5x gen [same] | same | 1.0" in md


def test_several_generators_give_one_table_and_one_figure(setup):  # noqa: F811
    cli, tmp = setup
    with galaug.create_dataset(tmp / "dim.zarr", bands=("g", "r", "i"), image_size=16,
                               provenance=galaug.make_entry("generate")) as w:
        w.append(np.asarray(open_dataset(tmp / "gen.zarr").read()["images"]) / 3, origin=1)
    text = (tmp / "exp.toml").read_text().replace('gen = "gen.zarr"\n',
                                                  'generators = {bright = "gen.zarr", dim = "dim.zarr"}\n')
    (tmp / "exp.toml").write_text(text + '\n[[arms]]\nname = "100% real"\nreal = "1.0"\n'
                                         '\n[[arms]]\nname = "5x gen"\nreal = "0"\ngen = "5x"\n')
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml")
    assert res.exit_code == 0, res.output
    results = json.loads((tmp / "exp" / "results.json").read_text())
    assert list(results["table"]) == ["100% real", "5x gen [bright]", "5x gen [dim]"]
    assert results["generators"] == {"bright": str(tmp / "gen.zarr"), "dim": str(tmp / "dim.zarr")}
    table = results["table"]
    assert table["5x gen [dim]"]["nominal"]["mean"] < table["5x gen [bright]"]["nominal"]["mean"]
    md = (tmp / "exp" / "results.md").read_text()
    assert md.count("| arm |") == 1 and "| 5x gen [bright] |" in md and "| 5x gen [dim] |" in md
    assert "No oracle, so no usefulness: the real set real.zarr was not simulated" in md
    assert (tmp / "exp" / "results.png").stat().st_size > 5000
    assert {r["generator"] for r in results["rows"]} == {None, "bright", "dim"}


@pytest.mark.parametrize("extra, message", [
    ('generators = {a = "gen.zarr", b = "./gen.zarr"}\n', "generators a and b are both ./gen.zarr (a generator "
                                                          "listed twice)"),
    ('generators = {a = "gen.zarr", a = "gen.zarr"}\n', "not valid TOML"),
    ('generators = {oracle = "gen.zarr"}\n', "'oracle' names the oracle's arms"),
    ('gen = "gen.zarr"\ngenerators = {a = "gen.zarr"}\n', "give generators or gen, not both"),
    ('gen = "gen.zarr"\noracle = true\n', "oracle = true in the experiment file: the real set real.zarr was not "
                                          "simulated (its history starts with test)"),
    ('gen = "gen.zarr"\noracle = true\n[[arms]]\nname = "half"\nreal = "1.0"\ngen = "0.5"\n',
     "gen 0.5 is a fraction of each generator's set"),
])
def test_bad_generators_and_oracles_run_nothing(setup, extra, message):  # noqa: F811
    cli, tmp = setup
    (tmp / "bad.toml").write_text('task = "mean-image"\nreal = "real.zarr"\nval = "val.zarr"\nseeds = [0]\n'
                                  f'out = "exp"\n{extra}')
    assert_user_error(cli.invoke("experiment", "ratios", tmp / "bad.toml"), message)
    assert not (tmp / "exp").exists() and MeanImage.calls == []


def test_the_oracle_flag_is_named_in_its_error(setup):  # noqa: F811
    cli, tmp = setup
    assert_user_error(cli.invoke("experiment", "ratios", tmp / "exp.toml", "--oracle"),
                      "--oracle: the real set real.zarr was not simulated")
    assert not (tmp / "exp").exists() and MeanImage.calls == []


def test_the_oracle_plan_reads_the_provenance(galaug_plugins, tmp_path):
    from galaug.data.ops import split_dataset
    from galaug.degrade.dataset import degrade_dataset
    from galaug.oracle import no_oracle_reason, oracle_plan
    from galaug.sources.simulate import simulate

    galaug_plugins.plugin(galaug_register=lambda register: register.source(Blobs))
    simulate(Blobs(BlobsConfig(noise=2.0)), tmp_path / "all.zarr", 12, seed=4)
    train, val = split_dataset(tmp_path / "all.zarr", tmp_path / "train.zarr", tmp_path / "val.zarr", val=4, seed=0)
    other = simulate(Blobs(BlobsConfig(noise=2.0)), tmp_path / "other.zarr", 4, seed=7)
    plan = oracle_plan(train, avoid=[val, other], manager=galaug_plugins.manager)
    assert (plan.source, plan.config["noise"], plan.seed, plan.used_seeds) == ("blobs", 2.0, 8, (4, 7))
    with pytest.raises(ParamError, match="oracle_seed 7 is a seed of the real or validation set's simulation"):
        oracle_plan(train, avoid=[other], seed=7, manager=galaug_plugins.manager)
    degraded = degrade_dataset(train, tmp_path / "blurred.zarr", "psf:gaussian(sigma=1)", device="cpu")
    why = "was made by simulate then split then degrade; the oracle reproduces only a simulation followed by splits"
    assert why in no_oracle_reason(degraded, manager=galaug_plugins.manager)
    with pytest.raises(ParamError, match="^oracle: the real set blurred.zarr " + why):
        oracle_plan(degraded, manager=galaug_plugins.manager)


# -- the summary, from a made-up results table -------------------------------------------------------------------

def cell(arm, test_set, values, *, generator=None, baseline=None, n_real=10, n_generated=0, arm_name=None):
    values = [float(v) for v in values]
    return {"arm": arm, "arm_name": arm_name or arm, "generator": generator, "baseline": baseline,
            "test_set": test_set, "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, "n": len(values), "values": values,
            "seeds": list(range(len(values))), "n_real": n_real, "n_generated": n_generated, "alpha": False}


MADE_UP = [
    cell("100% real", "nominal", [50, 52, 54]), cell("100% real", "shifted", [90, 92, 94]),
    cell("10% real", "nominal", [80, 85, 90], n_real=1), cell("10% real", "shifted", [91, 93, 95], n_real=1),
    cell("5x gen + 10% real [alae]", "nominal", [60, 61, 62], generator="alae", n_real=1, n_generated=50,
         arm_name="5x gen + 10% real"),
    cell("5x gen + 10% real [alae]", "shifted", [88, 91, 94], generator="alae", n_real=1, n_generated=50,
         arm_name="5x gen + 10% real"),
    cell("5x gen + 10% real [oracle]", "nominal", [45, 46, 47], generator="oracle", n_real=1, n_generated=50,
         arm_name="5x gen + 10% real"),
    cell("5x gen + 10% real [oracle]", "shifted", [89, 90, 91], generator="oracle", n_real=1, n_generated=50,
         arm_name="5x gen + 10% real"),
    cell("baseline: tv", "nominal", [70, 70, 71, 70], baseline="tv"),
    cell("baseline: tv", "shifted", [89, 89, 90, 89], baseline="tv"),
]


def test_the_summary_names_the_best_arm_per_test_set_and_the_spread():
    text = summary_text(MADE_UP, metric="mse")
    paragraphs = text.split("\n\n")
    assert paragraphs[0] == ("Best arm by mse (lower is better): 5x gen + 10% real [oracle] on nominal, ahead of "
                             "100% real by more than the seed spread; 5x gen + 10% real [oracle] on shifted, ahead of "
                             f"5x gen + 10% real [alae] within the seed spread. Here {SPREAD_RULE}.")
    assert paragraphs[1] == ("Against the best classical baseline (tv), the best arm is better by more than the "
                             "seed spread on nominal; worse within the seed spread on shifted.")
    assert text.count(SPREAD_RULE) == 1
    # better higher: the order turns
    flipped = summary_text([dict(c, arm=c["arm"].upper()) for c in MADE_UP if not c["baseline"]], metric="psnr")
    assert flipped.startswith("Best arm by psnr (higher is better): 10% REAL on nominal, ahead of 5X GEN + 10% "
                              "REAL [ALAE] by more than the seed spread; 10% REAL on shifted")
    assert summary_text(MADE_UP[:2], metric="mse", oracle="No oracle, so no usefulness: why.").endswith(
        "\n\nNo oracle, so no usefulness: why.")
    one_seed = summary_text([cell(c["arm"], c["test_set"], c["values"][:1], baseline=c["baseline"])
                             for c in MADE_UP if c["test_set"] == "nominal"], metric="mse")
    assert "ahead of 100% real (one seed: no spread)" in one_seed
    assert "the best arm is better on nominal (one seed: no spread)." in one_seed


def test_usefulness_pairs_each_generated_arm_with_its_real_share_and_its_oracle():
    rows = {r["test_set"]: r for r in usefulness(MADE_UP, metric="mse")}
    assert set(rows) == {"nominal", "shifted"}
    nominal = rows["nominal"]  # (85 - 61) / (85 - 46), per seed (80-60)/(80-45), (85-61)/(85-46), (90-62)/(90-47)
    assert nominal["value"] == pytest.approx(24 / 39)
    per_seed = [20 / 35, 24 / 39, 28 / 43]
    assert nominal["spread"] == pytest.approx(np.std(per_seed, ddof=1))
    assert rows["shifted"]["value"] is None and rows["shifted"]["why"] == "oracle gain within seed spread"
    without = usefulness([c for c in MADE_UP if c["arm"] != "10% real"], metric="mse")
    assert {r["why"] for r in without} == {"no arm with the same real images and none generated"}
    text = summary_text(MADE_UP, metric="mse", usefulness_rows=list(rows.values()))
    assert "Usefulness on nominal (" in text and "alae 0.615 ± 0.040 with 5x gen + 10% real" in text


def test_one_number_format_per_table():
    fmt = table_format([5807, 16180, 45460], [550.4, 360, 87])
    assert [fmt(v) for v in (5807, 550.4, 16180, 87)] == ["5807", "550", "16180", "87"]
    fmt = table_format([0.01234, 0.2], [0.0004, 0.01])
    assert [fmt(v) for v in (0.01234, 0.0004, 0.2)] == ["0.01234", "0.00040", "0.20000"]
    fmt = table_format([12.0, 40.0], [0.0, 1e-13])  # no spread, or only rounding: as few decimals as write all
    assert fmt(12.0) == "12" and fmt(1e-13) == "0"
    fmt = table_format([0.5, 40.0])
    assert (fmt(0.5), fmt(40.0)) == ("0.5", "40.0")
    fmt = table_format([1.23456, 40.0])  # at most four significant digits of the largest
    assert (fmt(1.23456), fmt(40.0)) == ("1.23", "40.00")
    fmt = table_format([3e-9, 5e-9], [1e-10])
    assert fmt(3e-9) == "3.00e-09" and fmt(1e-10) == "1.00e-10"


def test_results_md_opens_with_the_summary_and_the_report_shows_it_first(tmp_path):
    from galaug.experiment import Arm, summarise
    from galaug.report import build_report

    out = tmp_path / "experiment"
    (out / "results").mkdir(parents=True)
    arms = (Arm("100% real"), Arm("5x gen", real="0", gen="5x"))
    for tag, means in {"100-real": (10.0, 11.0), "5x-gen--alae": (5807.0, 5808.0),
                       "5x-gen--diffusion": (16180.0, 16181.0)}.items():
        for seed, value in enumerate(means):
            (out / "results" / f"{tag}-s{seed}.json").write_text(json.dumps(
                {"arm": {}, "seed": seed, "n_real": 1, "n_generated": 0,
                 "metrics": {"summary": {"nominal": {"mse": value}}}}))
    summarise(out, arms, [0, 1], metric="mse", generators={"alae": "a.zarr", "diffusion": "d.zarr"},
              no_oracle="No oracle, so no usefulness: because.")
    md = (out / "results.md").read_text()
    summary, rest = md.split("\n\nmse, mean ± std over seeds; generated images: alae (a.zarr), diffusion (d.zarr)\n\n")
    assert summary == ("Best arm by mse (lower is better): 100% real on nominal, ahead of 5x gen [alae] by more "
                       f"than the seed spread. Here {SPREAD_RULE}.\n\nNo oracle, so no usefulness: because.")
    cells = re.findall(r"\| ([0-9.]+) ± ([0-9.]+) \(n=2\) \|", rest)
    assert cells == [("10.50", "0.71"), ("5807.50", "0.71"), ("16180.50", "0.71")]  # one format: 2 decimals
    (tmp_path / "report.toml").write_text('[[section]]\ntitle = "Experiment"\nexperiment = "experiment"\n')
    page = build_report(tmp_path / "report.toml", tmp_path / "report.html").read_text()
    assert page.count("Best arm by mse") == 1
    assert page.index("Best arm by mse") < page.index("<table>") < page.index("<figure>")
