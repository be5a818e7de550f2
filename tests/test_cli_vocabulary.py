"""One vocabulary across commands: outputs last, common options, deprecated spellings as hidden aliases.

Every deprecated spelling still works for one release, prints one note on
stderr, and is hidden from --help; giving it with its replacement is an
error. Also: ``galaug info RUN``, ``galaug config --preset`` and the spec
names of degradations in ``plugins`` and ``config``.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from galaug import open_dataset
from galaug.kinds import Generator
from galaug.runs import write_options

from test_cli import CountAnalysis, assert_user_error


@pytest.fixture
def cli(galaug_plugins):
    galaug_plugins.plugin(galaug_register=lambda register: register.analysis(CountAnalysis))
    return galaug_plugins


def assert_note(result, old: str, new: str) -> None:
    """The command worked and said once, on stderr, that ``old`` is deprecated in favour of ``new``."""
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "deprecated" in line]
    assert notes == [f"galaug: {old} is deprecated, use {new}"], result.stderr
    assert "deprecated" not in result.stdout


def assert_hidden(cli, command: list[str], *spellings: str) -> None:
    text = cli.invoke(*command, "--help").output
    for spelling in spellings:
        assert f" {spelling} " not in text and f" {spelling}," not in text, f"{spelling} shown in {command} --help"


# -- outputs are the last argument ---------------------------------------------------------

@pytest.mark.parametrize("flag", ["-o", "--output"])
def test_show_output_flag_is_a_deprecated_alias(cli, make_dataset, tmp_path, flag):
    ds = make_dataset(6)
    res = cli.invoke("show", ds.path, flag, tmp_path / "old.png", "-n", "2")
    assert_note(res, "-o/--output", "the positional OUT (galaug show DATASET OUT)")
    assert (tmp_path / "old.png").stat().st_size > 0
    res = cli.invoke("show", ds.path, tmp_path / "new.png", "-n", "2")
    assert res.exit_code == 0 and res.stderr == "" and (tmp_path / "new.png").exists()
    assert_hidden(cli, ["show"], "-o", "--output")


def test_an_output_given_twice_or_not_at_all_is_a_usage_error(cli, make_dataset, tmp_path):
    ds = make_dataset(4)
    both = cli.invoke("show", ds.path, tmp_path / "a.png", "-o", tmp_path / "b.png")
    assert both.exit_code == 2 and "give only OUT" in both.stderr
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()
    neither = cli.invoke("show", ds.path)
    assert neither.exit_code == 2 and "Missing argument 'OUT'" in neither.stderr
    assert cli.invoke("export", ds.path).exit_code == 2
    assert cli.invoke("report", tmp_path / "r.toml").exit_code == 2


def test_export_fits_is_a_deprecated_alias(cli, make_dataset, tmp_path):
    ds = make_dataset(5)
    res = cli.invoke("export", ds.path, "--fits", tmp_path / "old", "--limit", "3")
    assert_note(res, "--fits", "the positional OUT_DIR (galaug export DATASET OUT_DIR)")
    assert len(list((tmp_path / "old").iterdir())) == 3
    res = cli.invoke("export", ds.path, tmp_path / "new", "--limit", "3")
    assert res.exit_code == 0 and res.stderr == "" and len(list((tmp_path / "new").iterdir())) == 3
    assert_hidden(cli, ["export"], "--fits")


@pytest.mark.parametrize("flag", ["-o", "--output"])
def test_analyze_output_flag_is_a_deprecated_alias_and_makes_every_argument_an_input(cli, make_dataset, tmp_path,
                                                                                    flag):
    a, b = make_dataset(6), make_dataset(4, seed=1)
    res = cli.invoke("analyze", "count", a.path, b.path, flag, tmp_path / "old")
    assert_note(res, "-o/--output", "the last argument OUT (galaug analyze NAME INPUT... OUT)")
    old = json.loads((tmp_path / "old" / "report.json").read_text())
    res = cli.invoke("analyze", "count", a.path, b.path, tmp_path / "new")
    assert res.exit_code == 0 and res.stderr == ""
    new = json.loads((tmp_path / "new" / "report.json").read_text())
    assert old["results"] == new["results"] == {"n": [6.0, 4.0]} and old["inputs"] == new["inputs"]
    assert_hidden(cli, ["analyze"], "-o", "--output")


def test_analyze_needs_an_input_and_an_output(cli, make_dataset, tmp_path):
    ds = make_dataset(3)
    res = cli.invoke("analyze", "count", ds.path)
    assert res.exit_code == 2 and "INPUT... OUT" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [ds.path.name]


@pytest.mark.parametrize("flag", ["-o", "--output"])
def test_report_output_flag_is_a_deprecated_alias(cli, tmp_path, flag):
    (tmp_path / "r.toml").write_text('title = "t"\n\n[[section]]\ntitle = "A"\ntext = "Some text."\n')
    res = cli.invoke("report", tmp_path / "r.toml", flag, tmp_path / "old.html")
    assert_note(res, "-o/--output", "the positional OUT (galaug report MANIFEST OUT)")
    res = cli.invoke("report", tmp_path / "r.toml", tmp_path / "new.html")
    assert res.exit_code == 0 and res.stderr == ""
    assert "Some text." in (tmp_path / "old.html").read_text() and "Some text." in (tmp_path / "new.html").read_text()
    assert_hidden(cli, ["report"], "-o", "--output")


def _fake_run(path, kind: str, name: str, **options):
    path.mkdir(parents=True)
    write_options(path, {kind: name, "plugin_version": "1.0", "config": {}, "data": "/data/train.zarr",
                         "data_id": "0123456789abcdef", "seed": 3, **options})
    return path


@pytest.mark.parametrize("flag", ["-o", "--output"])
def test_task_eval_output_flag_is_a_deprecated_alias(cli, make_dataset, tmp_path, monkeypatch, flag):
    seen = []

    def evaluate_run(run, data, *, out=None, **kw):
        seen.append(out)
        return {"summary": {"mse": 1.0}}, out or run.path / "metrics-val.json"

    monkeypatch.setattr("galaug.runs.evaluate_run", evaluate_run)
    run = _fake_run(tmp_path / "run", "task", "denoise", degrade=None)
    ds = make_dataset(3)
    res = cli.invoke("task", "eval", "denoise", run, ds.path, flag, tmp_path / "old.json")
    assert_note(res, "-o/--output", "the positional OUT (galaug task eval NAME RUN DATA OUT)")
    assert cli.invoke("task", "eval", "denoise", run, ds.path, tmp_path / "new.json").stderr == ""
    assert cli.invoke("task", "eval", "denoise", run, ds.path).exit_code == 0  # OUT has a default
    assert seen == [str(tmp_path / "old.json"), str(tmp_path / "new.json"), None]
    assert_hidden(cli, ["task", "eval"], "-o", "--output")


# -- renamed options ---------------------------------------------------------------------------

def test_degrade_pipeline_is_a_deprecated_alias_of_degrade(cli, make_dataset, tmp_path):
    ds = make_dataset(6)
    spec = "psf:gaussian(sigma=1)|noise:gaussian(std=2)"
    res = cli.invoke("degrade", ds.path, tmp_path / "old.zarr", "--pipeline", spec, "--seed", "4", "--device", "cpu")
    assert_note(res, "--pipeline", "--degrade")
    res = cli.invoke("degrade", ds.path, tmp_path / "new.zarr", "--degrade", spec, "--seed", "4", "--device", "cpu")
    assert res.exit_code == 0 and res.stderr == ""
    old, new = open_dataset(tmp_path / "old.zarr"), open_dataset(tmp_path / "new.zarr")
    assert np.array_equal(old.read()["images"], new.read()["images"])
    assert old.provenance[-1]["config"]["pipeline"] == new.provenance[-1]["config"]["pipeline"]
    assert_hidden(cli, ["degrade"], "--pipeline")


def test_degrade_needs_a_spec_once(cli, make_dataset, tmp_path):
    ds = make_dataset(3)
    missing = cli.invoke("degrade", ds.path, tmp_path / "o.zarr")
    assert missing.exit_code == 2 and "Missing option '--degrade'" in missing.stderr
    both = cli.invoke("degrade", ds.path, tmp_path / "o.zarr", "--degrade", "noise:gaussian(std=1)",
                      "--pipeline", "noise:gaussian(std=2)")
    assert both.exit_code == 2 and "give only --degrade" in both.stderr
    assert not (tmp_path / "o.zarr").exists()


def test_generate_batch_is_a_deprecated_alias_of_batch_size(cli, make_dataset, tmp_path, monkeypatch):
    seen = []
    ds = make_dataset(3)

    def generate(run, out, n, *, batch_size, **kw):
        seen.append(batch_size)
        return ds

    monkeypatch.setattr("galaug.generators.generate", generate)
    run = _fake_run(tmp_path / "run", "generator", "fake")
    res = cli.invoke("generate", "fake", run, tmp_path / "g.zarr", "-n", "5", "--batch", "7")
    assert_note(res, "--batch", "--batch-size")
    res = cli.invoke("generate", "fake", run, tmp_path / "g.zarr", "-n", "5", "--batch-size", "9")
    assert res.exit_code == 0 and res.stderr == ""
    assert cli.invoke("generate", "fake", run, tmp_path / "g.zarr", "-n", "5", "--batch", "0").exit_code == 2
    assert seen == [7, 9]
    assert_hidden(cli, ["generate"], "--batch")


# -- experiment ratios: OUT, --out, --overwrite ---------------------------------------------------

@pytest.fixture
def experiment(galaug_plugins, make_dataset, tmp_path):
    from test_experiment import MeanImage

    galaug_plugins.plugin(galaug_register=lambda register: register.task(MeanImage))
    make_dataset(20, name="real.zarr", seed=0)
    make_dataset(10, name="val.zarr", seed=1)
    (tmp_path / "exp.toml").write_text('task = "mean-image"\nreal = "real.zarr"\nval = "val.zarr"\nseeds = [0]\n'
                                       'out = "exp"\n\n[[arms]]\nname = "all real"\nreal = "1.0"\n')
    MeanImage.calls.clear()
    return galaug_plugins, tmp_path, MeanImage.calls


def test_experiment_output_is_positional_and_out_is_a_deprecated_alias(experiment):
    cli, tmp, calls = experiment
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml", tmp / "here")
    assert res.exit_code == 0 and res.stderr == "", res.output
    assert (tmp / "here" / "results.json").exists() and not (tmp / "exp").exists()
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml", "--out", tmp / "there")
    assert_note(res, "--out", "the positional OUT (galaug experiment ratios CONFIG.toml OUT)")
    assert (tmp / "there" / "results.json").exists()
    assert cli.invoke("experiment", "ratios", tmp / "exp.toml").exit_code == 0  # the file's out
    assert (tmp / "exp" / "results.json").exists() and len(calls) == 3
    assert_hidden(cli, ["experiment", "ratios"], "--out")


def test_experiment_overwrite_starts_afresh_instead_of_resuming(experiment):
    cli, tmp, calls = experiment
    assert cli.invoke("experiment", "ratios", tmp / "exp.toml").exit_code == 0
    assert cli.invoke("experiment", "ratios", tmp / "exp.toml").exit_code == 0
    assert len(calls) == 1  # resumed: the finished pair is skipped
    (tmp / "exp" / "results" / "stale-s9.json").write_text("{}")
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml", "--overwrite")
    assert res.exit_code == 0, res.output
    assert len(calls) == 2 and "skipped" not in res.output
    assert not (tmp / "exp" / "results" / "stale-s9.json").exists()
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".")) == []


def test_experiment_overwrite_deletes_nothing_for_a_bad_config_or_a_foreign_folder(experiment):
    cli, tmp, calls = experiment
    assert cli.invoke("experiment", "ratios", tmp / "exp.toml").exit_code == 0
    before = sorted(p.name for p in (tmp / "exp").rglob("*"))
    (tmp / "bad.toml").write_text((tmp / "exp.toml").read_text().replace("mean-image", "nope"))
    assert_user_error(cli.invoke("experiment", "ratios", tmp / "bad.toml", "--overwrite"), "unknown task plugin 'nope'")
    assert sorted(p.name for p in (tmp / "exp").rglob("*")) == before
    (tmp / "exp" / "notes.txt").write_text("mine")
    assert_user_error(cli.invoke("experiment", "ratios", tmp / "exp.toml", "--overwrite"), "notes.txt",
                      "not only an experiment's output")
    assert (tmp / "exp" / "notes.txt").read_text() == "mine" and (tmp / "exp" / "results.json").exists()
    assert_user_error(cli.invoke("experiment", "ratios", tmp / "exp.toml", tmp, "--overwrite"))
    assert (tmp / "real.zarr").exists() and len(calls) == 1


# -- galaug info RUN ---------------------------------------------------------------------------

def test_info_describes_a_run(cli, tmp_path):
    run = _fake_run(tmp_path / "00000-alae-train", "generator", "alae", preset="tiny", steps=20,
                    command="galaug train alae train.zarr")
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss_d": 0.5 / s}) + "\n" for s in (5, 10)))
    (run / "checkpoints").mkdir()
    for step in (5, 10):
        (run / "checkpoints" / f"ckpt-{step:06d}.pt").write_bytes(b"")
    res = cli.invoke("info", run)
    assert res.exit_code == 0, res.output
    text = res.output
    assert "generator run" in text and "alae 1.0 (preset tiny)" in text and "/data/train.zarr (id 01234567)" in text
    assert "step 10 of 20" in text and "ckpt-000010.pt" in text and "  step 10, loss_d 0.05\n" in text
    assert "$ galaug train alae train.zarr" in text
    data = json.loads(cli.invoke("info", run, "--json").output)
    assert data["kind"] == "generator" and data["plugin"] == "alae" and data["done"] == 10
    assert data["checkpoint"].endswith("ckpt-000010.pt") and len(data["metrics"]) == 2


def test_info_describes_a_task_run_before_its_first_epoch(cli, tmp_path):
    run = _fake_run(tmp_path / "t", "task", "denoise", degrade="noise:gaussian(std=1.0)")
    res = cli.invoke("info", run)
    assert res.exit_code == 0, res.output
    assert "task run" in res.output and "noise:gaussian(std=1.0)" in res.output and "nothing yet" in res.output


def test_info_on_a_folder_that_is_neither_is_one_line(cli, tmp_path):
    (tmp_path / "plain").mkdir()
    assert_user_error(cli.invoke("info", tmp_path / "plain"), "not a galaug dataset or run directory")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "options.json").write_text("{not json")
    assert_user_error(cli.invoke("info", tmp_path / "broken"), "unreadable options.json")


# -- galaug config: --preset, degradation names, notes ------------------------------------------

@dataclasses.dataclass
class ToyConfig:
    size: int = 8
    depth: int = 2
    lr: float = 0.1


class Toy(Generator):
    """A generator with presets."""

    name = "toy"
    Config = ToyConfig
    presets = {"big": {"size": 64, "depth": 6}}


def test_config_preset_then_config_file_then_set(galaug_plugins, tmp_path):
    galaug_plugins.plugin(galaug_register=lambda register: register.generator(Toy))
    assert galaug_plugins.invoke("config", "generator", "toy").output == "size = 8\ndepth = 2\nlr = 0.1\n"
    res = galaug_plugins.invoke("config", "generator", "toy", "--preset", "big")
    assert res.output == "size = 64\ndepth = 6\nlr = 0.1\n"
    (tmp_path / "c.toml").write_text("depth = 4\nlr = 0.5\n")
    res = galaug_plugins.invoke("config", "generator", "toy", "--preset", "big", "--config", tmp_path / "c.toml",
                                "--set", "lr=0.01")
    assert res.output == "size = 64\ndepth = 4\nlr = 0.01\n"
    assert_user_error(galaug_plugins.invoke("config", "generator", "toy", "--preset", "huge"),
                      "unknown preset 'huge' for toy (presets: big)")


@pytest.mark.parametrize("name", ["psf:gaussian", "psf-gaussian"])
def test_config_of_a_degradation_shows_its_constraint_as_a_note(galaug_plugins, name):
    res = galaug_plugins.invoke("config", "degradation", name)
    assert res.exit_code == 0, res.output
    assert res.output == ("# sigma: unset (float | str | tuple[float | str, ...])\n"
                          "# fwhm: unset (float | str | tuple[float | str, ...])\n"
                          "# note: give exactly one of sigma or fwhm (pixels, or an angle like 0.8arcsec)\n")
    res = galaug_plugins.invoke("config", "degradation", name, "--set", "sigma=2")
    assert res.output == "sigma = 2.0\n# fwhm: unset (float | str | tuple[float | str, ...])\n"


def test_config_of_an_unknown_degradation_names_the_spec_names(galaug_plugins):
    assert_user_error(galaug_plugins.invoke("config", "degradation", "psf:gausian"),
                      "unknown degradation 'psf:gausian'", "psf:gaussian", "noise:ccd")
    assert_user_error(galaug_plugins.invoke("config", "degradation", "psf:gaussian", "--set", "sigmaa=2"),
                      "unknown config key 'sigmaa'")


def test_plugins_lists_degradations_by_their_spec_names(galaug_plugins):
    res = galaug_plugins.invoke("plugins")
    names = [line.split()[1] for line in res.output.splitlines()[1:] if line.startswith("degradation")]
    assert "psf:gaussian" in names and "noise:ccd" in names and "resample" in names
    assert not any("-" in n for n in names)
    rows = json.loads(galaug_plugins.invoke("plugins", "--json").output)
    assert {"psf:moffat", "noise:poisson"} <= {r["name"] for r in rows if r["kind"] == "degradation"}


# -- --seed says where it is recorded only where it is ---------------------------------------------

def test_seed_help_names_where_the_seed_is_recorded(cli):
    def seed_help(*command):
        text = " ".join(cli.invoke(*command, "--help").output.split())
        return text[text.index("--seed"):]

    assert "recorded" not in seed_help("show").split("--overwrite")[0]
    assert "recorded in the metrics file" in seed_help("task", "eval")
    assert "recorded in report.json" in seed_help("analyze")
    for command in (["split"], ["degrade"], ["generate"], ["mix"], ["simulate"]):
        assert "recorded in the provenance" in seed_help(*command), command
