"""Images/s of the Zarr torch loader against a one-sample-per-read baseline, in the same run.

    python benchmarks/loader.py --n 4096 --size 64 --bands 4 --batch 64

Prints the write rate of the dataset writer, then the read rate of
galaug's contiguous-block loader and of a naive map-style dataset that reads
one sample per __getitem__ (what a per-sample torch Dataset over Zarr does),
both through a DataLoader with the same workers.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

import galaug
from galaug.data.torch import make_loader


class PerSample(torch.utils.data.Dataset):
    """Baseline: one Zarr read per sample."""

    def __init__(self, path):
        self.path, self.ds = path, None
        self.n = len(galaug.open_dataset(path))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.ds is None:
            self.ds = galaug.open_dataset(self.path)
        return torch.from_numpy(self.ds.read(i, i + 1, fields=["images"])["images"][0])


def write_random(path: Path, *, n: int, bands: int, size: int, seed: int = 0) -> float:
    """Write ``n`` standard-normal float32 images (incompressible: the most bytes per image); return seconds."""
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    with galaug.create_dataset(path, bands=[f"b{i}" for i in range(bands)], image_size=size,
                               provenance=galaug.make_entry("bench")) as w:
        for s in range(0, n, 256):
            w.append(rng.normal(size=(min(256, n - s), bands, size, size)).astype(np.float32))
    return time.perf_counter() - t


def rate(loader, n_images: int) -> float:
    t = time.perf_counter()
    seen = 0
    for batch in loader:
        seen += len(batch["images"] if isinstance(batch, dict) else batch)
    assert seen == n_images
    return seen / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--bands", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.zarr"
        dt = write_random(path, n=a.n, bands=a.bands, size=a.size)
        mb = a.n * a.bands * a.size * a.size * 4 / 2**20
        print(f"dataset: {a.n} x {a.bands}x{a.size}x{a.size} float32 ({mb:.0f} MB), "
              f"chunk {galaug.open_dataset(path).chunk_rows} rows")
        print(f"write                      {a.n / dt:9.0f} img/s  {mb / dt:7.1f} MB/s")
        for workers in sorted({0, a.workers}):
            block = make_loader(path, batch_size=a.batch, num_workers=workers, seed=0)
            base = DataLoader(PerSample(path), batch_size=a.batch, shuffle=True, num_workers=workers)
            r_block, r_base = rate(block, a.n), rate(base, a.n)
            print(f"read, {workers} workers: galaug {r_block:9.0f} img/s | per-sample baseline "
                  f"{r_base:8.0f} img/s | x{r_block / r_base:.1f}")


if __name__ == "__main__":
    main()
