"""The diffusion generator plugin: training, exact resume, deterministic sampling, conditioning, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import galaug
from galaug.conditions import parse_conditions, read_condition_table
from galaug.errors import GalaugError
from galaug.sources.sersic import SersicConfig
from galaug.sources.simulate import simulate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GALAUG_PROGRESS": "0"}
#: a U-Net small enough for tests: 16 px, two levels, 8 channels
TINY = ["--set", "image_size=16", "--set", "width=8", "--set", "mults=1,2", "--set", "batch_size=16",
        "--set", "checkpoint_every=5", "--set", "sample_every=1000", "--set", "log_every=5",
        "--set", "sample_steps=4", "--set", "transform_samples=200"]


def cli(*args):
    exe = Path(sys.executable).with_name("galaug")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=ENV, timeout=600)


def ok(result):
    assert result.returncode == 0, result.stderr
    return result


def one_line_error(result, *words):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: ") and "Traceback" not in result.stderr, result.stderr
    for w in words:
        assert w in lines[-1], lines[-1]
    return lines[-1]


@pytest.fixture(scope="module")
def sersic(tmp_path_factory):
    """Sersic galaxies of 16 px with sizes over a factor of four, and their params."""
    path = tmp_path_factory.mktemp("data") / "sersic.zarr"
    cfg = SersicConfig(image_size=16, pixel_scale=0.5, r_half_range=(0.6, 2.4), n_range=(1.0, 2.0),
                       noise_std=0.5, flux_range=(500.0, 2000.0))
    return simulate("sersic", path, 256, seed=0, config=cfg, overwrite=True)


@pytest.fixture(scope="module")
def conditional_run(sersic, tmp_path_factory):
    """A conditional run on r_half and flux, trained long enough for the condition to show."""
    root = tmp_path_factory.mktemp("runs")
    ok(cli("train", "diffusion", sersic.path, "--preset", "tiny", "--steps", "300", "--run-dir", root, *TINY,
           "--set", "condition=r_half,flux", "--set", "lr=2e-3", "--set", "ema_beta=0.95",
           "--set", "checkpoint_every=300", "--device", "cpu"))
    return next(root.iterdir())


@pytest.fixture(scope="module")
def unconditional_run(sersic, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    ok(cli("train", "diffusion", sersic.path, "--preset", "tiny", "--steps", "10", "--run-dir", root, *TINY,
           "--device", "cpu"))
    return next(root.iterdir())


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(sersic, tmp_path):
    args = ["train", "diffusion", sersic.path, "--preset", "tiny", *TINY, "--set", "condition=r_half",
            "--device", "cpu", "--seed", "4"]
    ok(cli(*args, "--steps", "10", "--run-dir", tmp_path / "a"))
    ok(cli(*args, "--steps", "5", "--run-dir", tmp_path / "b"))
    b = next((tmp_path / "b").iterdir())
    ok(cli("train", "diffusion", sersic.path, "--resume", b, "--steps", "10", "--device", "cpu"))
    a = next((tmp_path / "a").iterdir())
    load = lambda run: torch.load(run / "checkpoints" / "ckpt-00000010.pt", weights_only=True)  # noqa: E731
    sa, sb = load(a), load(b)
    for key in ("net", "ema"):
        for name, value in sa[key].items():
            assert torch.equal(value, sb[key][name]), (key, name)
    metrics = [json.loads(line)["step"] for line in (b / "metrics.jsonl").read_text().splitlines()]
    assert metrics == [5, 10]


def test_samples_do_not_depend_on_the_batch_and_the_condition_is_returned(conditional_run):
    model = galaug.load_generator(conditional_run)
    assert model.condition_names == ("r_half", "flux")
    whole = model.sample(rows=range(40), seed=7, condition={"r_half": 1.5})
    parts = [model.sample(rows=range(a, b), seed=7, condition={"r_half": 1.5}) for a, b in ((0, 3), (3, 40))]
    assert torch.equal(whole["images"], torch.cat([p["images"] for p in parts]))
    assert torch.equal(whole["condition"], torch.cat([p["condition"] for p in parts]))
    assert torch.all(whole["condition"][:, 0] == 1.5)
    lo, hi = model.condition_range["flux"]
    assert torch.all((whole["condition"][:, 1] >= lo) & (whole["condition"][:, 1] <= hi))  # drawn from training rows
    again = model.sample(rows=range(40), seed=8, condition={"r_half": 1.5})
    assert not torch.equal(whole["images"], again["images"])


def test_conditioning_on_r_half_moves_the_measured_size(conditional_run, sersic):
    from galaug_analyses.condition import moments

    model = galaug.load_generator(conditional_run)
    lo, hi = model.condition_range["r_half"]
    sizes = {}
    for value in (lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo)):
        images = model.sample(48, seed=1, condition={"r_half": value})["images"].numpy()
        sizes[value] = np.nanmedian(moments(images[:, 0], 0.5)["r_half"])
    small, large = sizes.values()
    assert large > 1.2 * small, sizes


def test_generate_writes_the_condition_into_params_and_two_processes_equal_one(conditional_run, tmp_path):
    table = tmp_path / "cond.csv"
    table.write_text("r_half,flux\n" + "".join(f"{1.0 + 0.1 * i},{800 + 10 * i}\n" for i in range(10)))
    ok(cli("generate", "diffusion", conditional_run, tmp_path / "one.zarr", "-n", "10", "--condition-from", table,
           "--steps", "3", "--guidance", "1.5", "--seed", "2", "--device", "cpu", "--allow-outliers"))
    ok(cli("generate", "diffusion", conditional_run, tmp_path / "two.zarr", "-n", "10", "--condition-from", table,
           "--steps", "3", "--guidance", "1.5", "--seed", "2", "--device", "cpu", "--allow-outliers", "--nproc", "2"))
    one, two = galaug.open_dataset(tmp_path / "one.zarr"), galaug.open_dataset(tmp_path / "two.zarr")
    assert one.param_names == ("r_half", "flux") and one.param_units == ("arcsec", "adu")
    params = one.read(fields=["params"])["params"]
    np.testing.assert_allclose(params[:, 0], 1.0 + 0.1 * np.arange(10), rtol=1e-6)
    np.testing.assert_allclose(params[:, 1], 800 + 10 * np.arange(10), rtol=1e-6)
    assert one.latent_dim is None  # the starting noise is as large as the image: not stored
    for field in ("images", "params"):
        np.testing.assert_array_equal(one.read(fields=[field])[field], two.read(fields=[field])[field])
    config = one.provenance[-1]["config"]
    assert config["guidance"] == 1.5 and config["steps"] == 3
    assert config["condition"]["r_half"]["per_sample"] is True


@pytest.mark.parametrize("args, words", [
    (["--condition", "r_half=1.0"], ["takes no condition"]),
    (["--guidance", "2"], ["guidance needs a conditional run"]),
])
def test_bad_input_on_an_unconditional_run(unconditional_run, tmp_path, args, words):
    out = tmp_path / "g.zarr"
    result = cli("generate", "diffusion", unconditional_run, out, "-n", "4", "--device", "cpu", *args)
    one_line_error(result, *words)
    assert not out.exists()


def test_bad_conditions_are_one_line_and_write_nothing(conditional_run, tmp_path):
    out = tmp_path / "g.zarr"
    run = ["generate", "diffusion", conditional_run, out, "-n", "4", "--device", "cpu"]
    one_line_error(cli(*run, "--condition", "n=2"), "'n'", "conditioned on r_half, flux")
    one_line_error(cli(*run, "--condition", "r_half=40"), "outside the training range", "--extrapolate")
    one_line_error(cli(*run, "--condition", "r_half=oops"), "--condition", "NAME=VALUE")
    table = tmp_path / "t.csv"
    table.write_text("r_half\n1.0\n1.1\n1.2\n")
    one_line_error(cli(*run, "--condition-from", table), "3 condition rows", "4 samples")
    one_line_error(cli(*run, "--guidance", "50"), "--guidance")
    one_line_error(cli(*run, "--steps", "0"), "--steps")
    assert not out.exists()
    # --extrapolate lets an out-of-range value through, and the value is what was asked for
    ok(cli(*run, "--condition", "r_half=3.0", "--extrapolate", "--steps", "2", "--allow-outliers"))
    assert np.all(galaug.open_dataset(out).read(fields=["params"])["params"][:, 0] == 3.0)


def test_a_condition_column_the_data_lacks_is_refused_before_the_run_starts(sersic, tmp_path):
    result = cli("train", "diffusion", sersic.path, "--preset", "tiny", *TINY, "--set", "condition=redshift",
                 "--steps", "2", "--run-dir", tmp_path / "r", "--device", "cpu")
    one_line_error(result, "redshift", "r_half")
    assert not any((tmp_path / "r").glob("*")) if (tmp_path / "r").exists() else True


def test_condition_check_reports_spearman_per_parameter(conditional_run, sersic, tmp_path):
    out = tmp_path / "check"
    ok(cli("analyze", "condition-check", conditional_run, sersic.path, out, "--set", "grid=3",
           "--set", "per_value=4", "--set", "max_control=40", "--set", "measure=moments", "--set", "steps=3"))
    report = json.loads((out / "report.json").read_text())["results"]
    for p in ("r_half", "flux"):
        entry = report["parameters"][p]
        assert -1 <= entry["spearman"] <= 1 and entry["n_samples"] == 12
        assert entry["control_spearman"] > 0.5  # the moments do measure the real images' size and flux
    assert (out / "condition_check.png").exists()
    result = cli("analyze", "condition-check", conditional_run, sersic.path, tmp_path / "c2",
                 "--set", "parameters=n")
    one_line_error(result, "n:", "conditioned on r_half, flux")


def test_the_python_api_refuses_bad_sampling_options(conditional_run, unconditional_run):
    model = galaug.load_generator(conditional_run)
    with pytest.raises(GalaugError, match="steps must be"):
        model.sample(2, steps=0)
    with pytest.raises(GalaugError, match="guidance must be"):
        model.sample(2, guidance=-1.0)
    with pytest.raises(GalaugError, match="no truncation"):
        model.sample(2, truncation=0.5)
    plain = galaug.load_generator(unconditional_run)
    assert plain.condition_names == () and "condition" not in plain.sample(2, steps=2)
    # encode is the ODE run backwards: decoding the code gives the image back, closely
    images = plain.sample(4, steps=8)["images"]
    back = plain.decode(plain.encode(images))
    spread = float(images.std())
    assert float((back - images).abs().median()) < 0.2 * spread


def test_conditions_parse_and_tables_read(tmp_path, sersic):
    assert parse_conditions(["r_half=2.5,flux=900", "n=1"]) == {"r_half": 2.5, "flux": 900.0, "n": 1.0}
    for bad in (["r_half"], ["r_half=x"], ["a=1,a=2"], ["=3"]):
        with pytest.raises(ValueError):
            parse_conditions(bad)
    table = read_condition_table(sersic.path, len(sersic), names=("r_half", "q"))
    assert set(table) == {"r_half", "q"} and len(table["q"]) == len(sersic)
    with pytest.raises(GalaugError, match="condition rows"):
        read_condition_table(sersic.path, 3, names=("r_half",))
    bad = tmp_path / "bad.csv"
    bad.write_text("r_half,flux\n1.0\n")
    with pytest.raises(GalaugError, match="line 2 has 1 values"):
        read_condition_table(bad, 1)


def test_a_generator_without_sampler_options_refuses_them_in_one_line(tmp_path):
    shipped = Path(__file__).parent.parent / "examples" / "checkpoints" / "alae-bulgedisk-tiny"
    out = tmp_path / "g.zarr"
    one_line_error(cli("generate", "alae", shipped, out, "-n", "4", "--steps", "3", "--device", "cpu"),
                   "takes no steps (--steps)")
    one_line_error(cli("generate", "alae", shipped, out, "-n", "4", "--condition", "r_half=1", "--device", "cpu"),
                   "takes no condition")
    assert not out.exists()


@pytest.mark.parametrize("size, bands", [(16, 1), (32, 4), (64, 2), (128, 5), (256, 3)])
def test_the_unet_takes_any_band_count_and_power_of_two_size(size, bands):
    from galaug_diffusion.generator import PRESETS, DiffusionConfig
    from galaug_diffusion.unet import UNet

    preset = {16: "tiny", 32: "tiny", 64: "small", 128: "small", 256: "paper"}[size]
    cfg = DiffusionConfig(**{**PRESETS[preset], "image_size": size, "width": 8, "condition": ("a", "b")})
    net = UNet(cfg.net(bands)).eval()
    x = torch.randn(2, bands, size, size)
    with torch.no_grad():
        v = net(x, torch.tensor([0.3, 0.7]), torch.randn(2, 2), torch.tensor([1.0, 0.0]))
    assert v.shape == x.shape and torch.isfinite(v).all()


def test_configs_out_of_range_are_refused():
    from galaug_diffusion.generator import DiffusionConfig

    for bad in ({"image_size": 48}, {"mults": ()}, {"image_size": 16, "mults": (1, 2, 2, 2)},
                {"condition": ("a", "a")}, {"cond_dropout": 1.0}, {"sample_steps": 0}, {"guidance": 30.0}):
        with pytest.raises(ValueError):
            DiffusionConfig(**bad)
