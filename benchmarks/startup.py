"""Start-up time of light commands, beside what Python and the heavy imports cost alone, in the same run.

    python benchmarks/startup.py --reps 7

Median wall and CPU seconds (min-max) of fresh processes, interleaved over
``--reps`` rounds: ``python -c pass`` (the interpreter), ``import click,
pluggy, importlib.metadata`` (what every galaug command needs: the floor),
``import numpy``, ``import zarr, astropy.units`` and ``import torch`` (what a
command avoids by importing them only when it needs them), ``galaug
--version``, ``galaug --help``, ``galaug plugins`` and ``galaug info DATA``
(which reads a dataset, so it needs zarr).

``--baseline DIR`` runs each galaug command a second time from another
checkout (``git worktree add DIR REF``; its ``galaug`` and ``plugins/*``
packages come first on ``PYTHONPATH``) in the same rounds, so that a change
is measured against the version before it under the same load:

    git worktree add /tmp/wt-base HEAD
    python benchmarks/startup.py --reps 15 --baseline /tmp/wt-base

Each case runs once before the counted rounds. ``--bytecode-cache`` gives
the commands a bytecode cache of their own (``PYTHONPYCACHEPREFIX`` in a
temporary folder, ``PYTHONDONTWRITEBYTECODE`` unset), as an installed galaug
has; without it they run with this environment's setting, and under
``PYTHONDONTWRITEBYTECODE=1`` every start compiles galaug's modules anew.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAKE_DATA = """
import sys
import numpy as np
import galaug
with galaug.create_dataset(sys.argv[1], bands="gr", image_size=16, provenance=galaug.make_entry("bench")) as w:
    w.append(np.zeros((8, 2, 16, 16), np.float32))
"""


def wall(cmd: list[str], env: dict[str, str] | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of ``cmd`` run to its end; the CPU time varies less than the
    wall time where other jobs share the machine."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode})")
    return seconds, usage.ru_utime + usage.ru_stime


def checkout_env(root: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with galaug and its plugins imported from the checkout ``root``."""
    if not (root / "galaug" / "__init__.py").is_file():
        raise SystemExit(f"{root}: not a galaug checkout (no galaug/__init__.py)")
    paths = [root, *sorted(p for p in (root / "plugins").iterdir() if p.is_dir())]
    return {**env, "PYTHONPATH": os.pathsep.join(map(str, paths))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--baseline", type=Path, default=None,
                   help="a checkout of another version; its galaug commands run in the same rounds")
    p.add_argument("--bytecode-cache", action="store_true",
                   help="give the commands a bytecode cache of their own, as an installed galaug has")
    args = p.parse_args()
    exe = str(Path(sys.executable).with_name("galaug"))
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        if args.bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        base_env = checkout_env(args.baseline.resolve(), env) if args.baseline else None
        data = Path(tmp) / "d.zarr"  # written by the older version (if any), which both can read
        subprocess.run([sys.executable, "-c", MAKE_DATA, str(data)], check=True, env=base_env or env, cwd=tmp)
        py = sys.executable
        cases: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass": ([py, "-c", "pass"], env),
            "import click, pluggy, importlib.metadata": ([py, "-c", "import click, pluggy, importlib.metadata"], env),
            "import numpy": ([py, "-c", "import numpy"], env),
            "import zarr, astropy.units": ([py, "-c", "import zarr, astropy.units"], env),
            "import torch": ([py, "-c", "import torch"], env),
        }
        for name, argv in (("--version", ["--version"]), ("--help", ["--help"]), ("plugins", ["plugins"]),
                           ("info DATA", ["info", str(data)])):
            cases[f"galaug {name}"] = ([exe, *argv], env)
            if base_env is not None:
                cases[f"galaug {name} (baseline)"] = ([exe, *argv], base_env)
        for cmd, case_env in cases.values():  # warm-up: disk caches, and the bytecode cache if given one
            wall(cmd, case_env)
        times: dict[str, list[float]] = {k: [] for k in cases}
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.reps):
            for name, (cmd, case_env) in cases.items():
                seconds, cpu_seconds = wall(cmd, case_env)
                times[name].append(seconds)
                cpu[name].append(cpu_seconds)
    if args.baseline:
        print(f"baseline: {args.baseline}")
    print("bytecode: " + ("a cache of the benchmark's own" if args.bytecode_cache else
                          "not written (PYTHONDONTWRITEBYTECODE)" if os.environ.get("PYTHONDONTWRITEBYTECODE")
                          else "this environment's caches"))
    print(f"median of {args.reps} interleaved rounds (min-max), seconds; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end\n")
    print("| command | wall, s | CPU (user + system), s |")
    print("|---|---:|---:|")
    for name, t in times.items():
        c = cpu[name]
        print(f"| `{name}` | {statistics.median(t):.2f} ({min(t):.2f}-{max(t):.2f}) | "
              f"{statistics.median(c):.2f} ({min(c):.2f}-{max(c):.2f}) |")


if __name__ == "__main__":
    main()
