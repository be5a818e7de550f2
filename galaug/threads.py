"""CPU threads of a galaug process: how many, and how idle threads wait.

:func:`configure` runs before each command (``--threads N``, added to every
command by :func:`galaug.cli.make_cli`):

- the number of threads is ``N``, else ``OMP_NUM_THREADS`` when set, else
  the cores this process may use (``os.sched_getaffinity``, which honours
  ``taskset`` and container CPU sets) divided among the processes of a
  torchrun job on this machine (``LOCAL_WORLD_SIZE``);
- idle OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``) unless
  the environment says otherwise. A spinning wait, OpenMP's default, makes
  every parallel region of a process that shares its cores with another
  job wait for time slices its own spinning threads hold, which made
  ``galaug degrade`` 3-7x slower beside another job; a passive wait costs
  little on a quiet machine (benchmarks/degrade.py measures both).

Both take effect through the environment when torch is not imported yet
(the OpenMP runtime reads it once, when torch loads it), and through
``torch.set_num_threads`` when it is.
"""

from __future__ import annotations

import os
import sys

__all__ = ["available_cores", "default_threads", "configure"]


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Threads when ``--threads`` is not given: ``OMP_NUM_THREADS``, else the cores shared among local ranks."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    local_ranks = os.environ.get("LOCAL_WORLD_SIZE", "1")
    ranks = int(local_ranks) if local_ranks.isdigit() and int(local_ranks) > 0 else 1
    return max(1, available_cores() // ranks)


def configure(threads: int | None = None) -> int:
    """Use ``threads`` CPU threads, or the default of :func:`default_threads`; returns the number.

    Without ``threads`` a process that has imported torch already (a Python
    session calling the CLI) keeps the number it set.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a count >= 1, got {threads!r}")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch = sys.modules.get("torch")
    if threads is None:
        if torch is not None:
            return torch.get_num_threads()
        threads = default_threads()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
