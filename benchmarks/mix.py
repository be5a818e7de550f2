"""Time and peak memory of `galaug mix` against a block copy of the same images into a Zarr array.

    python benchmarks/mix.py --real 10000 --gen 50000 --size 64 --bands 4 --repeats 3

Builds a real and a generated dataset, then in separate child processes
(so each peak RSS is its own), interleaved over ``--repeats`` rounds (best
of each): (1) `mix_datasets(--real 1.0 --gen 5x)`; (2) the baseline, a block
copy: both datasets' images read in blocks of 64 MiB (the size of mix's
shuffle window) and written into one presized Zarr array with the same
chunks and the same codec as galaug's output (``--codec``), in order,
with nothing else: no shuffle, no origin, index or metadata, no fsync.
Prints seconds, the ratio, and peak RSS of each (target: ratio <= 1.1).
"""

from __future__ import annotations

import argparse
import json
import shutil
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
from galaug.data import _format as fmt
from galaug.mix import mix_datasets
mode, real, gen, out, gen_share, codec = sys.argv[1:7]
fmt.set_default_codec(codec)
t = time.perf_counter()
if mode == "mix":
    mix_datasets(out, real_data=real, real="1.0", gen_data=gen, gen=gen_share, seed=0)
else:
    r, g = galaug.open_dataset(real), galaug.open_dataset(gen)
    n = len(r) + len(g)
    arr = zarr.create_array(out, shape=(n, *r.image_shape), chunks=(r.chunk_rows, *r.image_shape), dtype="float32",
                            config={"write_empty_chunks": True}, **fmt.codec_arrays(codec))
    rows = max(1, 64 * 2**20 // (4 * int(np.prod(r.image_shape))))
    pos = 0
    for ds in (r, g):
        for start in range(0, len(ds), rows):
            block = ds.array("images")[start:start + rows]
            arr[pos:pos + len(block)] = block
            pos += len(block)
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--real", type=int, default=10000)
    p.add_argument("--gen", type=int, default=50000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--bands", type=int, default=4)
    p.add_argument("--codec", default="raw", help="codec of the inputs, galaug's output and the copy")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    import galaug
    from galaug.data import _format as fmt

    fmt.set_default_codec(a.codec)
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
        print(f"{a.real} real + {a.gen} generated images of {a.bands}x{a.size}x{a.size} float32 ({gb:.2f} GiB), "
              f"codec {a.codec}, best of {a.repeats}")
        results: dict[str, dict] = {}
        ratios = []
        for _ in range(a.repeats):
            this = {}
            for mode in ("copy", "mix"):
                shutil.rmtree(tmp / f"{mode}.zarr", ignore_errors=True)
                out = subprocess.run([sys.executable, "-c", CHILD, mode, str(tmp / "real.zarr"), str(tmp / "gen.zarr"),
                                      str(tmp / f"{mode}.zarr"), f"{a.gen / a.real:g}x", a.codec],
                                     capture_output=True, text=True, check=True)
                this[mode] = json.loads(out.stdout.strip().splitlines()[-1])
                if mode not in results or this[mode]["seconds"] < results[mode]["seconds"]:
                    results[mode] = this[mode]
            ratios.append(this["mix"]["seconds"] / this["copy"]["seconds"])
        for mode in ("copy", "mix"):
            print(f"{mode:4s}: {results[mode]['seconds']:7.1f} s, peak RSS {results[mode]['peak_mib']:7.0f} MiB")
        print(f"mix / block copy: best x{results['mix']['seconds'] / results['copy']['seconds']:.2f}, "
              f"per round {', '.join(f'{r:.2f}' for r in ratios)}")


if __name__ == "__main__":
    main()
