"""Concurrency: two writers of one output name, and a reader while a dataset is being written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import galaug
from galaug.data.provenance import make_entry
from galaug.errors import DatasetError


def test_two_writers_of_one_name_one_wins_the_other_fails_cleanly(tmp_path):
    final = tmp_path / "out.zarr"
    first = galaug.create_dataset(final, bands="g", image_size=8, provenance=make_entry("first"))
    second = galaug.create_dataset(final, bands="g", image_size=8, provenance=make_entry("second"))
    first.append(np.ones((3, 1, 8, 8)))
    second.append(np.full((5, 1, 8, 8), 2.0))
    with pytest.raises(DatasetError, match="no such"):  # a reader sees nothing while both write
        galaug.open_dataset(final)
    first.close()
    with pytest.raises(DatasetError, match="appeared while writing"):
        second.close()
    ds = galaug.open_dataset(final)  # the winner's dataset, complete and untouched
    assert len(ds) == 3 and ds.provenance[-1]["step"] == "first"
    assert os.listdir(tmp_path) == ["out.zarr"]  # the loser's temporary is gone


def test_two_processes_simulating_to_one_name(tmp_path):
    """Started together: exactly one writes the dataset; the other ends with one error line and exit 2."""
    exe = Path(sys.executable).with_name("galaug")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GALAUG_PROGRESS": "0"}
    cmd = [str(exe), "simulate", "sersic", str(tmp_path / "out.zarr"), "-n", "64", "--size", "16", "--seed", "0"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2).strip().splitlines()
    assert len(loser) == 1 and loser[0].startswith("Error: ") and "out.zarr" in loser[0]
    assert ("output exists" in loser[0]) or ("appeared while writing" in loser[0])
    assert len(galaug.open_dataset(tmp_path / "out.zarr")) == 64
    assert os.listdir(tmp_path) == ["out.zarr"]
