"""The experiment's protocol: every arm the same number of gradient steps, generators retrained per arm (no leak),
and the real-set-size sweep."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from galaug import open_dataset
from galaug.checkpoints import CheckpointStore
from galaug.kinds import Generator, GeneratorModel, Layout
from galaug.mix import plan_mix
from galaug.runs import Run, Training

from test_cli import assert_user_error
from test_experiment import setup  # noqa: F401  (the fixture)
from test_experiment_oracle import FluxMean, simulated  # noqa: F401  (the fixture)


@dataclasses.dataclass
class CopyConfig:
    #: Gaussian noise added to each copy, in units of the data
    jitter: float = 0.0


class CopyModel(GeneratorModel):
    z_dim = w_dim = 1

    def __init__(self, images: np.ndarray, jitter: float, layout: Layout) -> None:
        self.images, self.jitter, self.layout, self.step = images, jitter, layout, 1

    def sample(self, n=None, *, seed=0, rows=None, truncation=None):
        rows = list(range(n) if rows is None else rows)
        out = np.empty((len(rows), *self.images.shape[1:]), np.float32)
        for i, r in enumerate(rows):
            rng = np.random.default_rng([seed, r])
            out[i] = self.images[rng.integers(len(self.images))] + self.jitter * rng.normal(size=out.shape[1:])
        z = torch.zeros(len(rows), 1)
        return {"images": torch.as_tensor(out), "z": z, "w": z}


class Copier(Generator):
    """Learns its training set by heart: every sample is one of its training images (a generator that leaks)."""

    name = "copier"
    version = "0.1"
    Config = CopyConfig
    trained_on: list = []

    def train(self, data, run_dir, *, steps=None, device="cpu", seed=0, resume=False):
        ds = open_dataset(data)
        Copier.trained_on.append(ds.id)
        store = CheckpointStore(run_dir, format="test-copier/1")
        with Training(run_dir, store=store, counter="step", total=1, resume=resume, seed=seed) as run:
            run.resume_state()
            run.save({"images": torch.from_numpy(ds.read()["images"]), "bands": list(ds.bands)}, number=1, keep=1)

    @classmethod
    def load(cls, run_dir, *, device="cpu", checkpoint=None):
        state = CheckpointStore(run_dir, format="test-copier/1").load()
        images = state["images"].numpy()
        layout = Layout(bands=tuple(state["bands"]), image_size=images.shape[-1], pixel_scale=None, flux_unit=None)
        return CopyModel(images, Run.open(run_dir).config(cls).jitter, layout)


ARMS = ('[[arms]]\nname = "10% real"\nreal = "0.1"\n\n'
        '[[arms]]\nname = "10% real + 2x gen"\nreal = "0.1"\ngen = "2x"\n\n'
        '[[arms]]\nname = "alpha 0.5"\nalpha = 0.5\n')


@pytest.fixture
def recipe(setup):  # noqa: F811
    """The experiment of test_experiment with a copier generator run (trained on the whole real set) as recipe."""
    from galaug.runs import plan_training

    cli, tmp = setup
    cli.plugin(galaug_register=lambda register: register.generator(Copier))
    plan = plan_training("generator", "copier", tmp / "real.zarr", manager=cli.manager, sets=["jitter=0.0"])
    run = plan.run(plan.start(path=tmp / "copier-all"))
    Copier.trained_on.clear()
    text = (tmp / "exp.toml").read_text().replace('gen = "gen.zarr"\n', 'generators = {copier = "copier-all"}\n')
    (tmp / "exp.toml").write_text(text + "\n" + ARMS)
    return cli, tmp, run


def test_no_leak_trains_each_arms_generator_on_exactly_its_real_images(recipe):
    cli, tmp, template = recipe
    text = (tmp / "exp.toml").read_text()
    (tmp / "exp.toml").write_text('generator_training = "both"\n' + text)
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml")
    assert res.exit_code == 0, res.output
    out = tmp / "exp"
    real = open_dataset(tmp / "real.zarr")
    assert len(Copier.trained_on) == 4  # one generator per seed of each generated arm
    for seed in (0, 1):
        result = json.loads((out / "results" / f"10-real-2x-gen--copier-no-leak-s{seed}.json").read_text())
        assert result["generator_training"] == "arm"
        run = Run.open(result["source"])
        subset = open_dataset(run.options["data"])
        assert run.options["data_id"] == subset.id == result["generator_data_id"]
        rows = plan_mix(n_real=len(real), n_gen=None, real="0.1", gen="2x", seed=seed).real_rows
        assert np.array_equal(np.sort(subset.array("index")[:]), rows) and len(rows) == 4
        assert run.options["experiment"]["seed"] == seed and run.options["config"] == template.options["config"]
        # the arm's mix takes the same real rows, and every generated image is a copy of one of them
        mix = open_dataset(out / "mixes" / f"10-real-2x-gen--copier-no-leak-s{seed}.zarr")
        data = mix.read()
        real_images = real.read()["images"]
        assert np.array_equal(np.sort(data["index"][data["origin"] == 0]), rows)
        for image in data["images"][data["origin"] == 1]:
            assert min(np.abs(real_images[r] - image).max() for r in rows) == 0
        # the leaking generator (trained on all 40) copies images that the arm's real part does not hold
        leak = open_dataset(out / "mixes" / f"10-real-2x-gen--copier-s{seed}.zarr").read()
        copied = {int(np.argmin(np.abs(real_images - im).reshape(len(real_images), -1).max(1)))
                  for im in leak["images"][leak["origin"] == 1]}
        assert copied - set(rows.tolist())
        # an alpha arm draws its real share at random: its generator saw exactly the rows its mix took
        result = json.loads((out / "results" / f"alpha-0-5--copier-no-leak-s{seed}.json").read_text())
        subset = open_dataset(Run.open(result["source"]).options["data"])
        mix = open_dataset(out / "mixes" / f"alpha-0-5--copier-no-leak-s{seed}.zarr").read()
        assert np.array_equal(np.sort(subset.array("index")[:]), np.unique(mix["index"][mix["origin"] == 0]))
    table = json.loads((out / "results.json").read_text())["table"]
    assert list(table) == ["10% real", "10% real + 2x gen [copier]", "10% real + 2x gen [copier no-leak]",
                           "alpha 0.5 [copier]", "alpha 0.5 [copier no-leak]"]
    md = (out / "results.md").read_text()
    assert "[... no-leak]: the generator's recipe trained afresh on each arm's own real images" in md
    # cached per (subset, seed): a rerun of a lost result trains no generator again
    (out / "results" / "10-real-2x-gen--copier-no-leak-s1.json").unlink()
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml")
    assert res.exit_code == 0, res.output
    assert len(Copier.trained_on) == 4


@pytest.mark.parametrize("extra, message", [
    ('generator_training = "per-arm"\n', "generator_training must be one of all, arm, both, got 'per-arm'"),
    ('generator_training = "arm"\ngenerator_steps = 0\n', "generator_steps must be at least 1, got 0"),
])
def test_bad_generator_training_runs_nothing(recipe, extra, message):
    cli, tmp, _ = recipe
    (tmp / "exp.toml").write_text(extra + (tmp / "exp.toml").read_text())
    assert_user_error(cli.invoke("experiment", "ratios", tmp / "exp.toml"), message)
    assert not (tmp / "exp").exists()


def test_no_leak_needs_a_generator_run_as_recipe(setup):  # noqa: F811
    cli, tmp = setup
    (tmp / "exp.toml").write_text('generator_training = "arm"\n' + (tmp / "exp.toml").read_text())
    assert_user_error(cli.invoke("experiment", "ratios", tmp / "exp.toml"),
                      "so gen must be a generator run folder (its recipe), not the generated set")
    assert not (tmp / "exp").exists()


# -- the size sweep ---------------------------------------------------------------------------

def test_the_size_sweep_writes_a_learning_curve_that_falls_for_the_oracle(simulated):  # noqa: F811
    cli, tmp = simulated
    text = (tmp / "exp.toml").read_text().split("[[arms]]")[0].replace('generators = {noise = "noise.zarr"}\n', "")
    (tmp / "exp.toml").write_text(text + 'sizes = [2, 6, 20, "all", 500]\nsize_gen = "3x"\n')
    res = cli.invoke("experiment", "sizes", tmp / "exp.toml")
    assert res.exit_code == 0, res.output
    out = tmp / "exp" / "sizes"
    curve = json.loads((out / "curve.json").read_text())
    assert len(FluxMean.calls) == 4 * 2 * 3  # sizes 2, 6, 20, 40 (500 is above the real set); alone and + oracle
    for ts in ("nominal", "bright"):
        lines = curve["lines"][ts]
        assert set(lines) == {"real only", "oracle"}
        for group in ("real only", "oracle"):
            ns = [p["n"] for p in lines[group]]
            means = [p["mean"] for p in lines[group]]
            assert ns == [2, 6, 20, 40] and all(p["seeds"] == 3 for p in lines[group])
            assert means[0] > means[-1], (ts, group, means)  # more real images: lower MSE
        oracle = [p["mean"] for p in lines["oracle"]]  # the real images and 3x as many perfect ones: monotone
        assert oracle == sorted(oracle, reverse=True), (ts, oracle)
    gains = curve["oracle_gain"]["nominal"]
    assert [g["n"] for g in gains] == [2, 6, 20, 40] and gains[0]["gain"] > gains[-1]["gain"] > 0
    oracle = open_dataset(tmp / "exp" / "sizes" / "oracle.zarr")
    assert len(oracle) == 3 * 40
    md = (out / "curve.md").read_text()
    assert md.startswith("Where the oracle's generated images help by more than the seed spread")
    assert "| real images | real only | oracle | oracle gain |" in md and "| 40 |" in md
    assert (out / "curve.png").stat().st_size > 5000
    # the report shows the curve after the sweep's table
    (tmp / "report.toml").write_text('title = "t"\n[[section]]\ntitle = "sweep"\nexperiment = "exp/sizes"\n')
    res = cli.invoke("report", tmp / "report.toml", tmp / "report.html")
    assert res.exit_code == 0, res.output
    page = (tmp / "report.html").read_text()
    assert page.index("oracle gain") > page.index("40 real + 3x gen [oracle]")
    assert "Where the oracle&#x27;s generated images help" in page or "Where the oracle's generated images help" in page
    assert "against the number of real training images" in page


@pytest.mark.parametrize("sizes, message", [
    ("[0, 10]", "sizes: 0 is not a number of real images"),
    ("[10, 10]", "sizes: 10 is listed twice"),
    ('[10]\nsize_gen = "0.5"', 'size_gen must be a multiple of each size, such as "5x", got \'0.5\''),
])
def test_bad_sizes_run_nothing(simulated, sizes, message):  # noqa: F811
    cli, tmp = simulated
    (tmp / "exp.toml").write_text(f"sizes = {sizes}\n" + (tmp / "exp.toml").read_text())
    assert_user_error(cli.invoke("experiment", "sizes", tmp / "exp.toml"), message)
    assert not (tmp / "exp").exists()


# -- the same number of gradient steps for every arm ------------------------------------------

def test_every_arm_makes_the_same_number_of_gradient_steps(setup):  # noqa: F811
    """With the denoiser: 10% real and 5x generated train as long as 100% real (2 epochs x 40/8 batches)."""
    import galaug_denoise

    cli, tmp = setup
    assert cli.register(galaug_denoise, name="denoise").status == "ok"
    (tmp / "exp.toml").write_text(
        'task = "denoise"\nreal = "real.zarr"\nval = "val.zarr"\ngen = "gen.zarr"\nseeds = [0]\nout = "exp"\n'
        'degrade = "noise:gaussian(std=10)"\nbaselines = "none"\nallow_domain_shift = true\n'
        '[task_config]\nwidth = 4\nblocks = 1\nbatch_size = 8\nepochs = 2\npatience = 0\nholdout = 0.25\n'
        'normalize_samples = 16\n\n'
        '[[arms]]\nname = "100% real"\nreal = "1.0"\n\n[[arms]]\nname = "10% real"\nreal = "0.1"\n\n'
        '[[arms]]\nname = "5x gen"\nreal = "0"\ngen = "5x"\n')
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml")
    assert res.exit_code == 0, res.output
    steps = {}
    for tag in ("100-real", "10-real", "5x-gen"):
        result = json.loads((tmp / "exp" / "results" / f"{tag}-s0.json").read_text())
        log = [json.loads(line) for line in
               (tmp / "exp" / "runs" / f"{tag}-s0" / "metrics.jsonl").read_text().splitlines()]
        assert [r["steps"] for r in log] == [5, 5] and not result["stopped_early"]
        steps[tag] = result["steps"]
    assert steps == {"100-real": 10, "10-real": 10, "5x-gen": 10}  # 4 images or 200: the same steps
    md = (tmp / "exp" / "results.md").read_text()
    assert "every arm: 2 epochs x 5 = 10 gradient steps, unless early stopping ended it sooner" in md


def test_a_task_that_trains_by_epochs_is_said_to(setup):  # noqa: F811
    cli, tmp = setup
    res = cli.invoke("experiment", "ratios", tmp / "exp.toml", "--seeds", "0")
    assert res.exit_code == 0, res.output
    assert "task mean-image trains by epochs, so arms with more images made more gradient steps" in \
        (tmp / "exp" / "results.md").read_text()


def test_steps_per_epoch_passes_over_the_rows_as_often_as_it_takes():
    from galaug_denoise.data import Pass, SplitSampler, split_rows, train_seeds

    split = split_rows(50, 0.1, seed=0, chunk_rows=64)  # 45 training rows: 3 batches of 16 per pass
    sampler = SplitSampler(split, batch_size=16, seed=1, steps=7)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 7 and all(isinstance(b, Pass) for b in batches)
        epochs.append(batches)
    passes = [b.index for e in epochs for b in e]
    # 21 batches through passes of 3 or 4 (shifted boundaries), continuing from one epoch into the next
    assert passes == sorted(passes) and set(passes) == set(range(passes[-1] + 1)) and passes[-1] >= 4
    for p in set(passes) - {passes[-1]}:  # each pass covers every training row once
        rows = sorted(r for e in epochs for b in e if b.index == p for a, z in b.ranges for r in range(a, z))
        assert rows == sorted(r for a, z in split.train for r in range(a, z))
    # a resumed run (a new sampler at epoch 2) gets the same batches; a row gets new seeds in every pass
    again = SplitSampler(split, batch_size=16, seed=1, steps=7)
    again.set_epoch(2)
    assert list(again) == epochs[2]
    assert (train_seeds(0, 0, np.arange(45)) != train_seeds(0, 1, np.arange(45))).all()
    with pytest.raises(ValueError, match="steps_per_epoch .* or max_steps_per_epoch"):
        from galaug_denoise.task import DenoiseConfig

        DenoiseConfig(steps_per_epoch=3, max_steps_per_epoch=2)


def test_the_size_sweep_without_leak_trains_each_generator_on_the_nested_real_images(recipe):
    cli, tmp, _ = recipe
    text = (tmp / "exp.toml").read_text().split("[[arms]]")[0]
    (tmp / "exp.toml").write_text('generator_training = "arm"\nsizes = [4, 20]\nsize_gen = "2x"\n' + text)
    res = cli.invoke("experiment", "sizes", tmp / "exp.toml", "--seeds", "3")
    assert res.exit_code == 0, res.output
    out = tmp / "exp" / "sizes"
    real = open_dataset(tmp / "real.zarr")
    seen = {}
    for n in (4, 20):
        result = json.loads((out / "results" / f"{n}-real-2x-gen--copier-no-leak-s3.json").read_text())
        subset = open_dataset(Run.open(result["source"]).options["data"])
        seen[n] = set(subset.array("index")[:].tolist())
        rows = plan_mix(n_real=len(real), n_gen=None, real=f"n={n}", gen=f"n={2 * n}", seed=3, nested=True).real_rows
        assert seen[n] == set(rows.tolist()) and len(rows) == n
        mix = open_dataset(out / "mixes" / f"{n}-real-2x-gen--copier-no-leak-s3.zarr").read()
        assert set(mix["index"][mix["origin"] == 0].tolist()) == seen[n]
    assert seen[4] < seen[20]  # nested: the 4 images are among the 20
    md = (out / "curve.md").read_text()
    assert "| real images | real only | copier no-leak |" in md
    assert "task mean-image trains by epochs, so arms with more images made more gradient steps" in md


def test_the_study_file_of_docs_study_md_loads():
    """examples/study.toml, the decisive run's exact file, stays a valid experiment file."""
    from pathlib import Path

    from galaug.config import resolve_config
    from galaug.experiment import load_experiment
    from galaug_denoise.task import DenoiseConfig

    config, arms, task_config = load_experiment(Path(__file__).parents[1] / "examples" / "study.toml")
    assert config.sizes == (50, 200, 800) and config.size_gen == "5x" and config.oracle and config.seeds == (0, 1, 2)
    assert [a.name for a in arms] == ["5x gen"] and set(config.generators) == {"alae", "diffusion"}
    cfg = resolve_config(DenoiseConfig, overrides=task_config)
    assert cfg.epochs * cfg.steps_per_epoch == 1200
