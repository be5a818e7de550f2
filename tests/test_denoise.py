"""The denoiser reference task: models, metrics, training, resume, evaluation, CLI, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import galaug
from galaug.degrade import parse_pipeline
from galaug_denoise.checkpoint import list_checkpoints
from galaug_denoise.data import Split, dihedral, split_rows
from galaug_denoise.metrics import PSNR_CAP, MetricSums, psnr, ssim
from galaug_denoise.models import ModelConfig, build_model
from galaug_denoise.normalize import Normalizer
from galaug_denoise.task import TEST_SETS, Denoise, DenoiseConfig, strengthen_noise

from conftest import galaxy_images
from test_cli import assert_user_error

#: the training check: galaxy blobs (peaks 100-300) blurred and with noise of std 10
SPEC = "psf:gaussian(sigma=1)|noise:gaussian(std=10)"
TINY = dict(width=8, blocks=1, batch_size=16, epochs=2, lr=3e-3)
TINY_SETS = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_dataset(path, images, *, clean=None):
    bands = tuple("grizy"[: images.shape[1]])
    kw = {"clean_size": clean.shape[-1]} if clean is not None else {}
    with galaug.create_dataset(path, bands=bands, image_size=images.shape[-1], provenance=galaug.make_entry("test"),
                               **kw) as w:
        w.append(images, clean=clean)
    return galaug.open_dataset(path)


def new_run(path, *, degrade=SPEC, seed=0):
    path.mkdir()
    (path / "options.json").write_text(json.dumps({"galaug_run": 1, "task": "denoise", "degrade": degrade,
                                                   "seed": seed}))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("denoise-data")
    return (write_dataset(root / "train.zarr", galaxy_images(192, seed=0)),
            write_dataset(root / "val.zarr", galaxy_images(48, seed=1)))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A run trained for 8 epochs on 192 images (shared by the tests that only read it)."""
    run = new_run(tmp_path_factory.mktemp("denoise-runs") / "run")
    cfg = DenoiseConfig(width=16, blocks=2, batch_size=16, epochs=8, lr=3e-3, holdout=0.25)
    Denoise(cfg).train(data[0].path, run, degrade=SPEC, seed=0)
    return cfg, run


@pytest.fixture
def cli(galaug_plugins):
    """The CLI with the denoise plugin registered (discovery is blocked in tests)."""
    import galaug_denoise

    assert galaug_plugins.register(galaug_denoise, name="denoise").status == "ok"
    return galaug_plugins


# -- models ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bands", [1, 3, 4])
@pytest.mark.parametrize("model", ["resnet", "unet"])
def test_model_output_shapes(bands, model):
    net = build_model(ModelConfig(bands=bands, model=model, width=8, blocks=2))
    for h, w in ((16, 16), (12, 20)):
        x = torch.randn(2, bands, h, w)
        assert net(x).shape == x.shape
    if model == "resnet":
        assert net(torch.randn(1, bands, 15, 9)).shape == (1, bands, 15, 9)  # any size
        assert len(net.blocks) == 2 and net.encoder.kernel_size == (5, 5) and net.encoder.out_channels == 8


def test_the_study_resnet_and_untrained_models_are_the_identity():
    net = build_model(ModelConfig(bands=3))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 12 and {c.kernel_size for c in convs} == {(5, 5)}
    assert [c.out_channels for c in convs] == [32] * 11 + [3]
    x = torch.randn(2, 3, 16, 16)
    for model in ("resnet", "unet"):  # the last layer starts at zero: output = input
        assert torch.equal(build_model(ModelConfig(bands=3, model=model, width=4))(x), x)


def test_unet_needs_sizes_divisible_by_4():
    net = build_model(ModelConfig(bands=1, model="unet", width=4))
    with pytest.raises(ValueError, match="divisible by 4, got 18x16"):
        net(torch.randn(1, 1, 18, 16))
    with pytest.raises(ValueError, match="model must be"):
        ModelConfig(bands=1, model="vgg")


def test_normalizer_round_trip_and_scale():
    images = galaxy_images(20, seed=3)
    for kind in ("robust", "asinh"):
        norm = Normalizer(3, kind=kind).fit(images)
        x = torch.from_numpy(images)
        torch.testing.assert_close(norm.inverse(norm(x)), x, rtol=1e-4, atol=1e-3)
        y = norm(x).numpy()
        assert 0.5 < np.percentile(y, 99.9) - np.percentile(y, 0.1) < 2.0  # the bulk spans about one unit


# -- data -----------------------------------------------------------------------------------

def test_holdout_split_is_seeded_disjoint_blocks_and_train_ranges_map_back():
    split = split_rows(1000, 0.1, seed=7, chunk_rows=64)
    rows = lambda rs: [r for a, b in rs for r in range(a, b)]
    held, train = rows(split.holdout), rows(split.train)
    assert sorted(held + train) == list(range(1000)) and not set(held) & set(train)
    assert 100 <= len(held) < 113 and len(split.holdout) >= 5  # several blocks, not one slab
    assert split == split_rows(1000, 0.1, seed=7, chunk_rows=64) != split_rows(1000, 0.1, seed=8, chunk_rows=64)
    assert rows(split.train_ranges(0, split.n_train)) == train
    assert rows(split.train_ranges(37, 300)) == train[37:300]
    assert split_rows(10, 0.0, seed=0, chunk_rows=4) == Split(train=((0, 10),), holdout=())


def test_dihedral_gives_eight_distinct_transforms():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).expand(8, 1, 4, 4)
    out = dihedral(x, np.arange(8))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8
    assert torch.equal(out[0], x[0]) and torch.equal(out[4], x[0].flip(-1))
    wide = dihedral(torch.randn(8, 1, 4, 6), np.arange(8))
    assert wide.shape == (8, 1, 4, 6)  # non-square images only take half turns


# -- metrics --------------------------------------------------------------------------------

def test_metrics_of_identical_images_and_mse_against_numpy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 2, 16, 16))
    b = a + rng.normal(scale=0.1, size=a.shape)
    sums = MetricSums(("g", "r"), [2.0, 4.0])
    sums.update(torch.from_numpy(a[:2]), torch.from_numpy(b[:2]))
    sums.update(torch.from_numpy(a[2:]), torch.from_numpy(b[2:]))
    res = sums.result()
    assert res["mse"] == pytest.approx(np.mean((a - b) ** 2), rel=1e-12)
    band_mse = np.mean((a - b) ** 2, axis=(0, 2, 3))
    assert res["bands"]["r"]["mse"] == pytest.approx(band_mse[1], rel=1e-12)
    assert res["bands"]["g"]["psnr"] == pytest.approx(10 * np.log10(4.0 / band_mse[0]))
    assert res["psnr"] == pytest.approx(10 * np.log10(1 / np.mean(band_mse / [4.0, 16.0])))
    same = MetricSums(("g", "r"), [2.0, 4.0])
    same.update(torch.from_numpy(a), torch.from_numpy(a))
    res = same.result()
    assert res["mse"] == 0 and res["psnr"] == PSNR_CAP and res["bands"]["g"]["psnr"] == PSNR_CAP
    assert res["ssim"] == pytest.approx(1.0, abs=1e-12) and psnr(0.0) == PSNR_CAP


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    x = galaxy_images(2, bands=2, size=24, seed=4).astype(np.float64)
    y = x + np.random.default_rng(1).normal(scale=10, size=x.shape)
    ours = ssim(torch.from_numpy(x), torch.from_numpy(y), data_range=[150.0, 250.0]).numpy()
    for i in range(2):
        for b, r in enumerate((150.0, 250.0)):
            ref = structural_similarity(x[i, b], y[i, b], data_range=r, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False)
            assert ours[i, b] == pytest.approx(ref, abs=1e-9)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_noise5x_is_five_times_the_noise(galaug_plugins):
    strong = strengthen_noise(parse_pipeline(
        "psf:gaussian(sigma=1)|noise:gaussian(std=[1, 2])|noise:poisson(gain=50)|noise:ccd(sky_level=2, gain=1, read_noise=3)"))
    assert strong.spec == ("psf:gaussian(sigma=1.0)|noise:gaussian(std=[5.0, 10.0])|noise:poisson(gain=2.0)|"
                           "noise:ccd(sky_level=50.0, gain=1.0, read_noise=15.0)")
    clean = torch.from_numpy(galaxy_images(4, bands=2))
    seeds = np.arange(4)
    nominal = parse_pipeline("noise:gaussian(std=2)").apply(clean, seeds)
    five = strengthen_noise(parse_pipeline("noise:gaussian(std=2)")).apply(clean, seeds)
    torch.testing.assert_close(five - clean, 5 * (nominal - clean), rtol=1e-4, atol=1e-3)


# -- training and evaluation ----------------------------------------------------------------

def test_tiny_training_beats_the_noisy_input_on_held_out_images(trained, data):
    cfg, run = trained
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == list(range(1, 9))
    assert lines[-1]["holdout_loss"] < lines[0]["holdout_loss"] and lines[-1]["lr"] < lines[0]["lr"]
    assert {"train_loss", "holdout_loss", "lr", "images_per_s"} <= set(lines[0])
    metrics = Denoise(cfg).evaluate(run, data[1].path, seed=0)
    nominal = metrics["nominal"]
    assert nominal["model"]["mse"] < 0.75 * nominal["input"]["mse"]
    assert nominal["model"]["psnr"] > nominal["input"]["psnr"] + 1
    assert nominal["model"]["ssim"] > nominal["input"]["ssim"]
    assert metrics["summary"]["nominal"]["mse"] == pytest.approx(nominal["model"]["mse"], rel=1e-5)
    assert metrics["summary"]["nominal"]["input_ssim"] == pytest.approx(nominal["input"]["ssim"], rel=1e-5)


def test_eval_reports_the_four_test_sets_and_is_deterministic(trained, data):
    cfg, run = trained
    first = Denoise(cfg).evaluate(run, data[1].path, seed=3)
    assert first == Denoise(cfg).evaluate(run, data[1].path, seed=3)
    assert first != Denoise(cfg).evaluate(run, data[1].path, seed=4)
    assert set(first["summary"]) == set(TEST_SETS) and "skipped" not in first
    for name in TEST_SETS:
        for who in ("model", "input"):
            assert set(first[name][who]) == {"mse", "psnr", "ssim", "bands"}
            assert set(first[name][who]["bands"]) == {"g", "r", "i"}
    assert first["lowres"]["spec"]["clean"] == "resample(scale=2.0, keep_size=true)"
    assert first["noise5x"]["spec"]["degrade"] == "psf:gaussian(sigma=1.0)|noise:gaussian(std=50.0)"
    assert first["noise5x"]["input"]["mse"] > 15 * first["nominal"]["input"]["mse"]  # noise variance x25
    assert first["both"]["input"]["mse"] > 15 * first["lowres"]["input"]["mse"]
    other = Denoise(DenoiseConfig(batch_size=7)).evaluate(run, data[1].path, seed=3)
    assert other["both"]["model"]["ssim"] == pytest.approx(first["both"]["model"]["ssim"], rel=1e-6)


def test_resume_ends_with_the_same_weights(data, tmp_path, monkeypatch):
    import galaug_denoise.train as task

    cfg = DenoiseConfig(**{**TINY, "epochs": 4}, checkpoint_every=2, holdout=0.2)
    whole = new_run(tmp_path / "whole")
    Denoise(cfg).train(data[0].path, whole, degrade=SPEC, seed=5)

    calls, real = [], task._holdout_loss

    def interrupted(*args, **kw):  # the fourth epoch dies after the third was logged (but not checkpointed)
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kw)

    parts = new_run(tmp_path / "parts")
    monkeypatch.setattr(task, "_holdout_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Denoise(cfg).train(data[0].path, parts, degrade=SPEC, seed=5)
    monkeypatch.setattr(task, "_holdout_loss", real)
    assert [p.name for p in list_checkpoints(parts)] == ["ckpt-000002.pt"]
    Denoise(cfg).train(data[0].path, parts, degrade=SPEC, seed=5, resume=True)
    for name in ("ckpt-000004.pt", "best.pt"):
        a = torch.load(whole / "checkpoints" / name, weights_only=True)
        b = torch.load(parts / "checkpoints" / name, weights_only=True)
        assert a["epoch"] == b["epoch"]
        for key in a["model"]:
            torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)
    epochs = [json.loads(l)["epoch"] for l in (parts / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]


def test_early_stopping_and_training_on_stored_pairs(tmp_path, monkeypatch):
    import galaug_denoise.train as task

    clean = galaxy_images(64, bands=2, seed=2)
    noisy = clean + np.random.default_rng(0).normal(scale=10, size=clean.shape).astype(np.float32)
    pairs = write_dataset(tmp_path / "pairs.zarr", noisy, clean=clean)
    run = new_run(tmp_path / "run", degrade=None)
    cfg = DenoiseConfig(**{**TINY, "epochs": 30}, patience=2, schedule="step", model="unet")
    monkeypatch.setattr(task, "_holdout_loss", lambda *args, **kw: 1.0)  # never improves after epoch 1
    Denoise(cfg).train(pairs.path, run, degrade=None, seed=0)
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["stopped"] for l in lines] == [False, False, True] and lines[-1]["best_epoch"] == 1
    assert torch.load(run / "checkpoints" / "best.pt", weights_only=True)["epoch"] == 1
    Denoise(cfg).train(pairs.path, run, degrade=None, seed=0, resume=True)  # a stopped run stays stopped
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    metrics = Denoise(cfg).evaluate(run, pairs.path, seed=0)
    assert set(metrics["summary"]) == {"nominal"} and set(metrics["skipped"]) == set(TEST_SETS[1:])
    assert metrics["nominal"]["spec"]["degrade"] == "the dataset's images" and metrics["checkpoint"]["epoch"] == 1
    assert metrics["nominal"]["input"]["mse"] == pytest.approx(np.mean((noisy - clean) ** 2), rel=1e-6)


# -- command line ---------------------------------------------------------------------------

def test_train_and_eval_from_the_cli(cli, data, tmp_path):
    res = cli.invoke("task", "train", "denoise", data[0].path, "--degrade",
                     "psf:gaussian(sigma=1)|noise:gaussian(std=0.5)", "--run-dir", tmp_path / "runs",
                     "--device", "cpu", "--set", "max_steps_per_epoch=3", *TINY_SETS)
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    assert {"best.pt", "ckpt-000001.pt", "ckpt-000002.pt"} == {p.name for p in (run / "checkpoints").iterdir()}
    assert [json.loads(l)["steps"] for l in (run / "metrics.jsonl").read_text().splitlines()] == [3, 3]
    res = cli.invoke("task", "eval", "denoise", run, data[1].path, "--device", "cpu")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[: res.output.rindex("wrote")])
    assert set(summary) == set(TEST_SETS)
    assert set(summary["both"]) == {"mse", "psnr", "ssim", "input_mse", "input_psnr", "input_ssim", "baselines"}
    assert set(summary["both"]["baselines"]) == {"gaussian", "wiener", "tv", "wavelet"}  # the default set
    report = json.loads((run / "metrics-val.json").read_text())
    assert report["metrics"]["degrade"] == "psf:gaussian(sigma=1.0)|noise:gaussian(std=0.5)"
    assert report["metrics"]["nominal"]["model"]["bands"]["g"]["ssim"] <= 1


def test_bad_input_is_one_clear_line(cli, data, tmp_path):
    runs = ["--run-dir", tmp_path / "runs"]
    assert_user_error(cli.invoke("task", "train", "denoise", data[0].path, "--degrade", "noise:gausian(std=1)", *runs),
                      "unknown degradation 'noise:gausian'", "did you mean 'noise:gaussian'")
    assert_user_error(cli.invoke("task", "train", "denoize", data[0].path, "--degrade", SPEC, *runs),
                      "unknown task plugin 'denoize'", "denoise")
    assert_user_error(cli.invoke("task", "train", "denoise", data[0].path, *runs),
                      "no degradation given and no clean member", "--degrade")
    assert_user_error(cli.invoke("task", "train", "denoise", data[0].path, "--degrade", SPEC, "--set", "model=vgg",
                                 *runs), "'model'", "'resnet', 'unet'")
    assert_user_error(cli.invoke("task", "train", "denoise", data[0].path, "--degrade",
                                 "resample(scale=2, keep_size=false)", *runs), "the denoiser needs the size kept")
    images = galaxy_images(16, bands=1, size=18)
    images[5, 0, 3, 3] = np.nan
    bad = write_dataset(tmp_path / "nan.zarr", images)
    assert_user_error(cli.invoke("task", "train", "denoise", bad.path, "--degrade", SPEC, *runs, *TINY_SETS),
                      "NaN/Inf pixels", "row 5")
    assert_user_error(cli.invoke("task", "train", "denoise", bad.path, "--degrade", SPEC, "--set", "model=unet", *runs),
                      "U-Net needs image sizes divisible by 4, got 18x18")
    assert not list((tmp_path / "runs").iterdir())  # nothing left behind
