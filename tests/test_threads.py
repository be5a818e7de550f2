"""Threads: --threads on every command, the default from the cores the process may use, passive waits."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from galaug import threads
from galaug.cli import make_cli


@pytest.fixture
def keep_threads():
    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    yield
    torch.set_num_threads(before)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


def test_every_command_takes_threads_and_it_sets_torch_threads(keep_threads):
    cli = make_cli()

    def leaves(group):
        for command in group.commands.values():
            yield from leaves(command) if hasattr(command, "commands") else [command]

    assert all(any(p.name == "threads" for p in c.params) for c in leaves(cli))
    torch.set_num_threads(2)
    result = CliRunner().invoke(cli, ["plugins", "--threads", "1"])
    assert result.exit_code == 0 and torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    result = CliRunner().invoke(cli, ["plugins", "--threads", "0"])
    assert result.exit_code == 2 and "--threads" in result.output
    torch.set_num_threads(3)
    CliRunner().invoke(cli, ["plugins"])  # without --threads, a session's own setting stays
    assert torch.get_num_threads() == 3


def test_the_default_is_the_cores_this_process_may_use_shared_among_local_ranks(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads.available_cores() == 8 and threads.default_threads() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert threads.default_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "5")  # the user's (or torchrun's) choice wins
    assert threads.default_threads() == 5
    with pytest.raises(ValueError, match="threads must be a count >= 1"):
        threads.configure(0)


def test_a_fresh_process_waits_passively_with_the_affinity_threads():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    code = ("import os; os.sched_setaffinity(0, {0}); from galaug.threads import configure; configure(); import torch;"
            " print(os.environ['OMP_WAIT_POLICY'], torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["PASSIVE", "1"]
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["ACTIVE", "1"]  # the environment's policy is kept
