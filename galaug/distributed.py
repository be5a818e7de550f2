"""Several processes on one job: torchrun, the process group, rank-sharded writes and gradient averaging.

Every galaug command that scales out runs unchanged under ``torchrun``
(``torch.distributed.run``), which starts one process per rank and sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address.
:func:`init` joins the process group: gloo for CPU tensors, NCCL for CUDA
ones where CUDA exists. Outside torchrun everything here is a no-op for a
world of one, so single-process code pays nothing.

What each command does with its ranks:

- ``generate``, ``simulate``, ``degrade`` (:func:`sharded_writer`): rank 0
  creates the output's temporary at full length, each rank writes a
  disjoint range of whole chunks, and rank 0 renames the output into place
  only when every rank has finished; a rank that fails makes every rank
  abort and nothing appears. Rows depend only on (seed, row), so the output
  equals a single-process run.
- ``train`` (ALAE) and ``task train`` (denoiser): each rank takes its slice
  of every global batch and gradients are averaged across ranks; rank 0
  writes checkpoints, metrics and samples.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from galaug.errors import GalaugError

__all__ = ["init", "rank", "world_size", "is_main", "barrier", "broadcast", "all_gather", "on_main", "all_ok",
           "average_gradients",
           "all_mean", "broadcast_module", "shard_range", "chunk_shard", "sharded_writer", "launch", "strip_nproc",
           "launched"]


def launched() -> bool:
    """True in a process started by torchrun with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def init(timeout_s: float = 1800.0) -> None:
    """Join the process group of a torchrun launch (no-op for a single process or when joined already).

    The backend is gloo for CPU tensors and, where CUDA is available, NCCL
    for CUDA tensors (``"cpu:gloo,cuda:nccl"``); each rank uses the GPU of
    its ``LOCAL_RANK`` (modulo the GPUs of the node). With more processes
    than GPUs on a node, NCCL cannot serve and gloo takes CUDA tensors too.
    """
    if not launched() or _dist() is not None:
        return
    import torch
    import torch.distributed as dist

    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise GalaugError(f"WORLD_SIZE is set but {', '.join(missing)} are not: start galaug with torchrun "
                          "(or --nproc N)")
    backend = "gloo"
    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]) % gpus)
        # NCCL refuses two ranks on one GPU; with more processes than GPUs on a node, gloo (which
        # all-reduces and broadcasts CUDA tensors too, through host memory) serves every tensor
        if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) <= gpus:
            backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))


def rank() -> int:
    """This process's rank (0 outside torchrun)."""
    dist = _dist()
    return dist.get_rank() if dist else 0


def world_size() -> int:
    """Number of ranks (1 outside torchrun)."""
    dist = _dist()
    return dist.get_world_size() if dist else 1


def is_main() -> bool:
    """Rank 0: the process that writes checkpoints, logs and the final rename."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (CPU, gloo)."""
    dist = _dist()
    if dist:
        dist.barrier(group=_cpu_group())


def _cpu_group():
    """A gloo group over all ranks for Python objects and flags, whatever the default backend."""
    global _GLOO
    dist = _dist()
    if _GLOO is None:
        _GLOO = dist.new_group(backend="gloo") if "nccl" in str(dist.get_backend()) else dist.group.WORLD
    return _GLOO


_GLOO = None


def broadcast(value: Any, src: int = 0) -> Any:
    """``value`` of rank ``src`` on every rank (any picklable object)."""
    dist = _dist()
    if not dist:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src, group=_cpu_group())
    return box[0]


def all_gather(value: Any) -> list[Any]:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank; ``[value]`` alone."""
    dist = _dist()
    if not dist:
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value, group=_cpu_group())
    return out


def on_main(fn, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` run on rank 0 and its result on every rank; its error too (reported by rank 0)."""
    if world_size() == 1:
        return fn(*args, **kwargs)
    result, error = None, None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            error = exc
    failed, result = broadcast((error is not None, result if error is None else str(error)))
    if failed:
        if error is not None:
            raise error
        raise _QuietError(result)
    return result


def all_ok(ok: bool) -> bool:
    """True on every rank if ``ok`` is True on every rank."""
    import torch

    dist = _dist()
    if not dist:
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=_cpu_group())
    return bool(flag.item())


def all_mean(tensor):
    """The mean of ``tensor`` over ranks (a new tensor; the input where there is one rank)."""
    dist = _dist()
    if not dist:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


def average_gradients(params) -> None:
    """Replace each parameter's ``.grad`` by its mean over ranks, in one flat all-reduce.

    The ALAE's three-phase step (frozen subsets, a double backward for R1)
    is outside what ``DistributedDataParallel``'s reducer handles, so its
    gradients are averaged here, after each backward and before the optimiser
    step: the same arithmetic as DDP, without the hooks.
    """
    dist = _dist()
    if not dist:
        return
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_module(module) -> None:
    """Rank 0's parameters and buffers on every rank (same seed gives the same weights; this makes sure)."""
    dist = _dist()
    if not dist:
        return
    for t in [*module.parameters(), *module.buffers()]:
        dist.broadcast(t.data, src=0)


def shard_range(n: int, part: int | None = None, parts: int | None = None) -> tuple[int, int]:
    """The ``part``-th of ``parts`` contiguous, near-equal ranges of ``range(n)`` (this rank's by default)."""
    part = rank() if part is None else part
    parts = world_size() if parts is None else parts
    return n * part // parts, n * (part + 1) // parts


def chunk_shard(n: int, chunk_rows: int, part: int | None = None, parts: int | None = None) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of ``part``: whole chunks of ``chunk_rows``, contiguous, ranks' ranges disjoint."""
    chunks = -(-n // chunk_rows)
    c0, c1 = shard_range(chunks, part, parts)
    return min(c0 * chunk_rows, n), min(c1 * chunk_rows, n)


@contextlib.contextmanager
def sharded_writer(out: str | Path, n: int, **writer_kwargs: Any) -> Iterator[tuple[Any, int, int]]:
    """Write the ``n`` rows of a new dataset from all ranks: yields ``(writer, lo, hi)`` on each.

    The caller appends rows ``lo`` to ``hi`` of the output, in order, to
    ``writer``; ``writer.set_metadata(provenance=...)`` adds to the step's
    provenance entry (with several processes, rank 0's items). With one process this is a plain
    :class:`~galaug.data.writer.DatasetWriter` over all rows. With several,
    rank 0 creates the temporary at full length (an error there, such as an
    existing output, is raised on every rank), every rank writes its chunk
    range into it, and once all have finished rank 0 writes the attributes
    and renames the output into place. If any rank fails, all abort and the
    output does not appear.
    """
    from galaug.data.writer import DatasetWriter, ShardWriter

    if world_size() == 1:
        with DatasetWriter(out, n=n, **writer_kwargs) as writer:
            yield writer, 0, n
        return
    main, error, writer = is_main(), None, None
    if main:
        try:
            # small members chunked in the rows of images, so that each rank's range is whole chunks of every member
            writer = DatasetWriter(out, n=n, _small_chunks=False, **writer_kwargs)
            writer.sharded = True
        except GalaugError as exc:
            error = exc
    info = broadcast((str(writer.tmp), writer.chunk_rows, len(writer.origin_names)) if writer is not None
                     else str(error))
    if isinstance(info, str):
        if main:
            raise error
        raise _QuietError(info)
    tmp, chunk_rows, n_origins = info
    lo, hi = chunk_shard(n, chunk_rows)
    shard = ShardWriter(Path(out), Path(tmp), lo, hi, n_origins=n_origins)
    ok = False
    try:
        yield shard, lo, hi
        shard.close()
        ok = True
    finally:
        everyone, failure = all_ok(ok), None
        if main:
            try:
                if everyone:
                    writer.set_metadata(provenance=shard.provenance)  # settled inside the block (rank 0's)
                    writer.close()
                else:
                    writer.abort()
            except BaseException as exc:  # still tell the others, then raise
                failure = exc
        committed = broadcast(everyone and failure is None)
        if failure is not None:
            raise failure
    if not committed:
        raise _QuietError(f"{out}: another rank failed; nothing was written")


class _QuietError(GalaugError):
    """An error another rank reports: this rank exits with status 2 without printing it again."""

    quiet = True


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(nproc: int, argv: Sequence[str], *, grace_s: float = 10.0) -> int:
    """Run ``galaug ARGV`` as ``nproc`` processes on this machine and return the job's exit status.

    The processes get torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; ``OMP_NUM_THREADS``
    set to the cores per process unless given), so they run exactly the code
    they would under torchrun. Unlike torchrun's agent, a failure ends as
    galaug's own one-line error and status 2: the error lines of all ranks
    are printed once each, rank 0's first. When a rank fails, the others get
    ``grace_s`` seconds to finish reporting before they are terminated
    (a rank waiting for a dead peer would otherwise wait for the timeout).
    """
    import subprocess
    import threading
    import time

    env = {**os.environ, "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    from galaug.threads import available_cores

    env.setdefault("OMP_NUM_THREADS", str(max(1, available_cores() // nproc)))
    if sys.stderr.isatty():
        env.setdefault("GALAUG_PROGRESS", "1")  # rank 0's bars, through the pipe
    errors: list[list[str]] = [[] for _ in range(nproc)]

    def pump(i: int, stream) -> None:
        pending = b""
        for data in iter(lambda: stream.read1(65536), b""):
            if i == 0:  # rank 0's output as it comes (progress bars included)
                sys.stderr.buffer.write(data)
                sys.stderr.flush()
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace").rstrip("\r")
                if text.startswith("Error: "):
                    errors[i].append(text)
                elif i:
                    print(text, file=sys.stderr)
        if pending.startswith(b"Error: "):
            errors[i].append(pending.decode(errors="replace"))

    procs, pumps = [], []
    for i in range(nproc):
        p = subprocess.Popen([sys.executable, "-m", "galaug", *argv], stderr=subprocess.PIPE,
                             env={**env, "RANK": str(i), "LOCAL_RANK": str(i)})
        procs.append(p)
        pumps.append(threading.Thread(target=pump, args=(i, p.stderr), daemon=True))
        pumps[-1].start()
    failed_at = None
    while any(p.poll() is None for p in procs):
        if failed_at is None and any(p.returncode not in (None, 0) for p in procs):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > grace_s:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
        time.sleep(0.05)
    for t in pumps:
        t.join()
    shown = set(errors[0])
    for lines in errors[1:]:
        for line in lines:
            if line not in shown:
                shown.add(line)
                print(line, file=sys.stderr)
    codes = [p.returncode for p in procs]
    if all(c == 0 for c in codes):
        return 0
    if 2 in codes:
        return 2
    bad = next(c for c in codes if c != 0)
    if not any(errors):
        print(f"Error: rank {codes.index(bad)} of {nproc} ended with status {bad}", file=sys.stderr)
    return 1 if bad < 0 else bad


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out

