"""Time and peak memory of `galaug mix` against a plain copy of the same bytes into a Zarr array.

    python benchmarks/mix.py --real 10000 --gen 50000 --size 64 --bands 4

Builds a real and a generated dataset, then in separate child processes
(so each peak RSS is its own): (1) `mix_datasets(--real 1.0 --gen 5x)`,
(2) the baseline: read both datasets block by block and write the same
number of bytes into one Zarr array with plain numpy slices. Prints seconds,
the ratio, and peak RSS of each (target: ratio <= 1.5, peak < 1 GiB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r'''
import json, resource, sys, time
import numpy as np, zarr
import galaug
from galaug.mix import mix_datasets
mode, real, gen, out = sys.argv[1:5]
t = time.perf_counter()
if mode == "mix":
    mix_datasets(out, real_data=real, real="1.0", gen_data=gen, gen=sys.argv[5], seed=0)
else:
    r, g = galaug.open_dataset(real), galaug.open_dataset(gen)
    n = len(r) + len(g)
    arr = zarr.create_array(out, shape=(n, *r.image_shape), chunks=(r.chunk_rows, *r.image_shape), dtype="float32")
    pos = 0
    for ds in (r, g):
        for start, block in ds.iter_blocks(fields=["images"]):
            arr[pos:pos + len(block["images"])] = block["images"]
            pos += len(block["images"])
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--real", type=int, default=10000)
    p.add_argument("--gen", type=int, default=50000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--bands", type=int, default=4)
    a = p.parse_args()
    import galaug

    with tempfile.TemporaryDirectory(dir=".") as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        for name, n, origin in (("real", a.real, 0), ("gen", a.gen, 1)):
            with galaug.create_dataset(tmp / f"{name}.zarr", bands=[f"b{i}" for i in range(a.bands)], image_size=a.size,
                                       provenance=galaug.make_entry("bench")) as w:
                for s in range(0, n, 1024):
                    k = min(1024, n - s)
                    w.append(rng.normal(size=(k, a.bands, a.size, a.size)).astype(np.float32), origin=origin)
        gb = (a.real + a.gen) * a.bands * a.size * a.size * 4 / 2**30
        print(f"{a.real} real + {a.gen} generated images of {a.bands}x{a.size}x{a.size} float32 ({gb:.2f} GiB)")
        results = {}
        for mode in ("copy", "mix"):
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(tmp / "real.zarr"), str(tmp / "gen.zarr"),
                                  str(tmp / f"{mode}.zarr"), f"{a.gen / a.real:g}x"],
                                 capture_output=True, text=True, check=True)
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{mode:4s}: {results[mode]['seconds']:7.1f} s, peak RSS {results[mode]['peak_mib']:7.0f} MiB")
        print(f"mix / plain copy: x{results['mix']['seconds'] / results['copy']['seconds']:.2f}")


if __name__ == "__main__":
    main()
