"""Write and read MB/s and compression ratio of each chunk codec, on clean, noisy and generated images.

    python benchmarks/codecs.py --n 2000 --size 64 --repeats 3

The three kinds of images are made in the run:

- clean: ``galaug simulate bulgedisk`` (4 bands, float32, smooth profiles
  with zeros far from the galaxy);
- noisy: the same, degraded by ``psf:moffat(fwhm=2, beta=3)|noise:gaussian(std=...)``
  (what ``galaug degrade`` writes as ``images``);
- generated: samples of the shipped ALAE checkpoint
  ``examples/checkpoints/alae-bulgedisk-tiny`` (32 px, upsampled if needed is
  not done: its own size is used).

Each codec writes the images as galaug does (chunks of about 2 MiB of whole
samples, every chunk stored) to a fresh Zarr array, then the array is read
back whole, as a training loader reads it (block by block in row order).
MB/s are of uncompressed bytes; the best of ``--repeats`` is printed, and
the page cache is warm for reads (what a second epoch sees). Each codec
carries a checksum (zstd's own, or a CRC32C codec), because galaug turns a
damaged chunk into an error instead of wrong pixels.

Last, the cost of durability: galaug's writer on ``--fsync-n`` images with
the fsync of every file before the final rename, and without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

import galaug
from galaug.data import _format as fmt

CODECS = {
    "zstd": lambda: {"compressors": ZstdCodec(level=0, checksum=True)},
    "zstd-3": lambda: {"compressors": ZstdCodec(level=3, checksum=True)},
    "blosc-lz4": lambda: {"compressors": (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
                                                  Crc32cCodec())},
    "blosc-zstd": lambda: {"compressors": (BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle"),
                                                      Crc32cCodec())},
    "raw": lambda: {"compressors": Crc32cCodec()},
}


def galaug_cli(*args: object) -> None:
    subprocess.run(["galaug", *map(str, args)], check=True, env={**os.environ, "GALAUG_PROGRESS": "0"})


def images(kind: str, n: int, size: int, workdir: Path) -> np.ndarray:
    clean, noisy, generated = workdir / "clean.zarr", workdir / "noisy.zarr", workdir / "generated.zarr"
    if kind == "clean":
        galaug_cli("simulate", "bulgedisk", clean, "-n", n, "--seed", 0, "--set", f"image_size={size}")
        return galaug.open_dataset(clean).read()["images"]
    if kind == "noisy":
        peak = float(np.median(galaug.open_dataset(clean).read(0, 64)["images"].max(axis=(2, 3))))
        galaug_cli("degrade", clean, noisy, "--degrade", f"psf:moffat(fwhm=2, beta=3)|noise:gaussian(std={peak / 20:.6g})")
        return galaug.open_dataset(noisy).read()["images"]
    galaug_cli("generate", "alae", Path(__file__).parent.parent / "examples/checkpoints/alae-bulgedisk-tiny", generated,
               "-n", n, "--seed", 0)
    return galaug.open_dataset(generated).read()["images"]


def measure(data: np.ndarray, codec: str, workdir: Path, repeats: int) -> tuple[float, float, float]:
    n = len(data)
    rows = fmt.chunk_rows(data[0].nbytes)
    mb = data.nbytes / 1e6
    best_w = best_r = float("inf")
    ratio = 0.0
    for _ in range(repeats):
        path = workdir / f"bench-{codec}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        t = time.perf_counter()
        arr = zarr.create_array(str(path), shape=data.shape, chunks=(rows, *data.shape[1:]), dtype="float32",
                                config={"write_empty_chunks": True}, **CODECS[codec]())
        for lo in range(0, n, rows):
            arr[lo:lo + rows] = data[lo:lo + rows]
        best_w = min(best_w, time.perf_counter() - t)
        stored = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        ratio = data.nbytes / stored
        arr = zarr.open_array(str(path), mode="r")
        t = time.perf_counter()
        for lo in range(0, n, rows):
            arr[lo:lo + rows]
        best_r = min(best_r, time.perf_counter() - t)
    shutil.rmtree(workdir / f"bench-{codec}.zarr", ignore_errors=True)
    return mb / best_w, mb / best_r, ratio


def fsync_cost(n: int, size: int, repeats: int, workdir: Path) -> None:
    """Seconds to write a dataset with galaug's writer, with the fsync before the rename and without it."""
    from galaug.data import make_entry
    from galaug.data import writer as writer_module

    data = np.random.default_rng(0).normal(size=(256, 4, size, size)).astype(np.float32)
    best = {}
    real_sync = writer_module.sync_tree
    for _ in range(repeats):
        for label, sync in (("with fsync", real_sync), ("without fsync", lambda root: None)):
            writer_module.sync_tree = sync
            path = workdir / "sync.zarr"
            shutil.rmtree(path, ignore_errors=True)
            t = time.perf_counter()
            with galaug.create_dataset(path, bands="griz", image_size=size, n=n, provenance=make_entry("b")) as w:
                for lo in range(0, n, 256):
                    w.append(data[: min(256, n - lo)])
            best[label] = min(best.get(label, float("inf")), time.perf_counter() - t)
    writer_module.sync_tree = real_sync
    gb = n * data[0].nbytes / 1e9
    print(f"\nwriting {n} images ({gb:.2f} GB) with galaug's writer, best of {repeats}: "
          f"{best['with fsync']:.2f} s with fsync, {best['without fsync']:.2f} s without "
          f"({best['with fsync'] / best['without fsync']:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fsync-n", type=int, default=10000, help="images of the fsync measurement (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        print(f"{args.n} images per kind; MB/s of uncompressed data, best of {args.repeats}")
        print(f"{'images':<10} {'codec':<22} {'write MB/s':>10} {'read MB/s':>10} {'ratio':>6}")
        for kind in ("clean", "noisy", "generated"):
            data = np.ascontiguousarray(images(kind, args.n, args.size, workdir), dtype=np.float32)
            for codec in CODECS:
                w, r, ratio = measure(data, codec, workdir, args.repeats)
                print(f"{kind:<10} {codec:<22} {w:>10.0f} {r:>10.0f} {ratio:>6.2f}", flush=True)
        if args.fsync_n:
            fsync_cost(args.fsync_n, args.size, args.repeats, workdir)


if __name__ == "__main__":
    main()
