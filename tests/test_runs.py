"""galaug.runs: one place that creates, opens and resumes runs; the scaffolding a third-party plugin trains with."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from galaug.checkpoints import CheckpointStore
from galaug.errors import GalaugError
from galaug.kinds import Generator, Task
from galaug.runs import Run, Training, plan_training, read_options, write_options


@dataclasses.dataclass
class CounterConfig:
    steps: int = 5
    checkpoint_every: int = 2


class Counter(Generator):
    """A third-party "generator" that trains with galaug's scaffolding only: a sum of random draws."""

    name = "counter"
    version = "1.2"
    Config = CounterConfig
    presets = {"short": {"steps": 3}}
    die_at: int | None = None

    def train(self, data, run_dir, *, steps=None, device="cpu", seed=0, resume=False):
        steps = steps or self.config.steps
        store = CheckpointStore(run_dir, format="test-counter/1")
        with Training(run_dir, store=store, counter="step", total=steps, resume=resume, seed=seed) as run:
            state = run.resume_state()
            total = torch.zeros(())
            if state is not None:
                total = state["total"]
                run.restore_rng(state)
            for step in range(run.start, steps):
                if step == Counter.die_at:
                    raise KeyboardInterrupt
                total = total + torch.rand(())
                run.log(step=step + 1, loss_sum=float(total))
                if run.due(step + 1, every=self.config.checkpoint_every):
                    run.save({"total": total}, number=step + 1, keep=2)


class Echo(Task):
    name = "echo"
    version = "0.3"

    def train(self, data, run_dir, *, degrade=None, device="cpu", seed=0, resume=False):
        (run_dir / "degrade.txt").write_text(degrade.spec if degrade is not None else "none")

    def evaluate(self, run_dir, data, *, degrade=None, device="cpu", seed=0):
        return {"summary": {"nominal": {"mse": 1.0}}}


@pytest.fixture
def manager(galaug_plugins):
    galaug_plugins.plugin(galaug_register=lambda register: (register.generator(Counter), register.task(Echo)))
    Counter.die_at = None
    return galaug_plugins.manager


def test_create_open_and_refuse_a_run_of_another_kind(manager, make_dataset, tmp_path):
    ds = make_dataset(20)
    plan = plan_training("generator", "counter", ds.path, manager=manager, seed=3, preset="short")
    run = plan.start(root=tmp_path / "runs")
    assert run.path.name == f"00000-counter-{ds.path.stem}" and run.kind == "generator" and run.name == "counter"
    options = read_options(run.path)
    assert options["config"] == {"steps": 3, "checkpoint_every": 2} and options["seed"] == 3
    assert options["data_id"] == ds.id and options["plugin_version"] == "1.2" and options["command"]
    assert plan.start(root=tmp_path / "runs").path.name.startswith("00001-")  # numbered after the first
    assert Run.open(run.path, kind="generator", name="counter").options == options
    with pytest.raises(GalaugError, match="not a task run \\(it is a generator run\\)"):
        Run.open(run.path, kind="task")
    with pytest.raises(GalaugError, match="is a 'counter' run, not 'alae'"):
        Run.open(run.path, name="alae")
    with pytest.raises(GalaugError, match="not a galaug run"):
        Run.open(tmp_path)
    with pytest.raises(GalaugError, match="unknown preset 'long' for counter \\(presets: short\\)"):
        plan_training("generator", "counter", ds.path, manager=manager, preset="long")


def test_resume_checks_data_and_config_and_keeps_the_run_options(manager, make_dataset, tmp_path):
    ds, other = make_dataset(20), make_dataset(20, seed=1)
    run = plan_training("generator", "counter", ds.path, manager=manager, seed=7,
                        sets=["steps=4"]).start(root=tmp_path)
    with pytest.raises(GalaugError, match="was trained on .* not on"):
        plan_training("generator", "counter", other.path, manager=manager, resume=run.path)
    with pytest.raises(GalaugError, match="drop --preset/--config/--set"):
        plan_training("generator", "counter", ds.path, manager=manager, resume=run.path, sets=["steps=9"])
    with pytest.raises(GalaugError, match="not a task run"):
        plan_training("task", "echo", ds.path, manager=manager, resume=run.path)
    plan = plan_training("generator", "counter", ds.path, manager=manager, resume=run.path, seed=99, steps=6)
    assert plan.resume.path == run.path and plan.options["seed"] == 7 and plan.options["steps"] == 6
    assert plan.config == CounterConfig(steps=4)


def test_training_scaffolding_resumes_exactly(manager, make_dataset, tmp_path):
    ds = make_dataset(20)
    whole = plan_training("generator", "counter", ds.path, manager=manager, seed=1)
    whole.run(whole.start(root=tmp_path / "a"))
    Counter.die_at = 3  # killed after step 3 was logged, with the newest checkpoint at step 2
    parts = plan_training("generator", "counter", ds.path, manager=manager, seed=1)
    run = parts.start(root=tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        parts.run(run)
    Counter.die_at = None
    plan_training("generator", "counter", ds.path, manager=manager, resume=run.path).run(run)
    a = [json.loads(line) for line in (tmp_path / "a").glob("*/metrics.jsonl").__next__().read_text().splitlines()]
    b = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5]  # the line logged after the checkpoint went, once
    assert a == b  # the RNG state came back with the checkpoint: the same draws
    assert [p.name for p in run.checkpoints()] == ["ckpt-00000005.pt", "ckpt-00000004.pt"]
    d = run.describe()
    assert d["done"] == 5 and d["counter"] == "step" and d["checkpoint"].endswith("ckpt-00000005.pt")
    assert run.summary_line().startswith(f"done: {run.path}; step 5; loss_sum ")


def test_a_new_run_that_fails_before_its_first_checkpoint_is_removed(manager, make_dataset, tmp_path):
    ds = make_dataset(20)
    plan = plan_training("generator", "counter", ds.path, manager=manager, sets=["checkpoint_every=10"])

    def broken(*args, **kwargs):
        raise GalaugError("the data are bad")

    Counter.train, real = broken, Counter.train
    try:
        run = plan.start(root=tmp_path)
        with pytest.raises(GalaugError, match="the data are bad"):
            plan.run(run)
    finally:
        Counter.train = real
    assert not run.path.exists()


def test_a_task_run_stores_the_canonical_degradation_and_gets_it_parsed(manager, make_dataset, tmp_path):
    ds = make_dataset(20)
    plan = plan_training("task", "echo", ds.path, manager=manager, degrade="psf:gaussian(sigma=2) | noise:gaussian(std=4)")
    run = plan.run(plan.start(path=tmp_path / "run"))
    spec = "psf:gaussian(sigma=2.0)|noise:gaussian(std=4.0)"
    assert run.degrade == spec == (run.path / "degrade.txt").read_text()
    assert Run.open(run.path).pipeline.spec == spec
    with pytest.raises(GalaugError, match="already exists and is not empty"):
        plan.start(path=run.path)


def test_experiment_runs_record_plugin_version_and_command(manager, make_dataset, tmp_path):
    write_options(tmp_path, {"task": "echo", "config": {}})
    assert Run.open(tmp_path).options["galaug_run"] == 1
    from galaug.experiment import Arm, ExperimentConfig, run_experiment

    real, val = make_dataset(20, name="real.zarr"), make_dataset(10, name="val.zarr", seed=1)
    config = ExperimentConfig(task="echo", real=str(real.path), val=str(val.path), degrade="noise:gaussian(std=1)",
                              seeds=(0,), out=str(tmp_path / "exp"))
    run_experiment(config, (Arm("all real"),), {}, manager=manager, echo=lambda *a: None)
    options = read_options(tmp_path / "exp" / "runs" / "all-real-s0", kind="task")
    assert options["plugin_version"] == "0.3" and options["command"] and options["arm"] == "all real"
    assert options["degrade"] == "noise:gaussian(std=1.0)"
