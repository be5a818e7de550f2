"""Atomic files (galaug.files) and device names (galaug.devices)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from galaug.devices import device_name, resolve_device
from galaug.errors import GalaugError
from galaug.files import atomic_path, atomic_write_text, dead_writer


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_atomic_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("old\n")
    assert atomic_write_text(path, "new\n") == path
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_atomic_path_keeps_the_suffix_and_removes_the_temporary_on_error(tmp_path):
    out = tmp_path / "grid.png"
    with atomic_path(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name == f".grid.png.tmp-{os.getpid()}.png"
        tmp.write_bytes(b"png")
    assert out.read_bytes() == b"png"
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert out.read_bytes() == b"png" and [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_the_next_writer_removes_temporaries_of_dead_writers_only(tmp_path):
    dead = _dead_pid()
    assert dead_writer(str(dead)) and dead_writer(f"{dead}.png") and dead_writer(f"{dead}-0123abcd")
    assert not dead_writer(str(os.getpid())) and not dead_writer("abc")
    (tmp_path / f".a.json.tmp-{dead}").write_text("half")
    (tmp_path / f".a.json.tmp-{dead}.json").write_text("half")
    live = tmp_path / f".a.json.tmp-{os.getppid()}"
    live.write_text("being written")
    atomic_write_text(tmp_path / "a.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.json", live.name])


def test_device_names():
    assert device_name("cpu") == "cpu" and str(resolve_device("cpu")) == "cpu"
    with pytest.raises(GalaugError, match="unknown device"):
        resolve_device("gpu")
