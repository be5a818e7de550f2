"""What the ``objects`` table costs at scale: bytes on disk, write and read time, ``galaug info``'s counts.

    python benchmarks/objects.py --n 100000

Writes ``--n`` rows of 1 x 8 x 8 images with an objects table in which
every row has its own source file (a folder of stamps: the worst case for
the table of file names), an id, RA/Dec and a WCS, then reads the table
back whole and counts it as ``galaug info`` does. Prints the size of
``objects/`` and of the zarr.json attributes, and the times (best of
``--repeats``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

import galaug
from galaug.data import make_entry, objects


def rows_of(n: int, tables: objects.ObjectTables) -> np.ndarray:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.cunit = ["RA---TAN", "DEC--TAN"], ["deg", "deg"]
    wcs.wcs.crval, wcs.wcs.crpix, wcs.wcs.cd = [150.0, 2.0], [4.5, 4.5], [[-5e-5, 0], [0, 5e-5]]
    template, _ = tables.row(objects.Identity(id="x", hdu="SCI,1", ra=0.0, dec=0.0, wcs=wcs))
    rows = np.repeat(template, n)
    rows["id"] = [f"J{150 + i * 1e-5:.5f}+{2 + i * 1e-5:.5f}".encode() for i in range(n)]
    rows["source"] = [tables.index("sources", f"stamps/field-{i // 1000:03d}/stamp-{i:07d}.fits") for i in range(n)]
    rows["ra"] = 150 + np.arange(n) * 1e-5
    rows["dec"] = 2 + np.arange(n) * 1e-5
    return rows


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    try:
        write = read = count = float("inf")
        for _ in range(args.repeats):
            path = folder / "objects.zarr"
            shutil.rmtree(path, ignore_errors=True)
            tables = objects.ObjectTables()
            rows = rows_of(args.n, tables)
            images = np.zeros((args.n, 1, 8, 8), np.float32)
            start = time.perf_counter()
            with galaug.create_dataset(path, bands=["r"], image_size=8, objects=tables,
                                       provenance=make_entry("benchmark")) as w:
                for lo in range(0, args.n, 4096):
                    w.append(images[lo:lo + 4096], objects=rows[lo:lo + 4096])
            write = min(write, time.perf_counter() - start)
            ds = galaug.open_dataset(path)
            start = time.perf_counter()
            back = ds.read(fields=["objects"])["objects"]
            read = min(read, time.perf_counter() - start)
            start = time.perf_counter()
            counts = galaug.open_dataset(path).object_counts()
            count = min(count, time.perf_counter() - start)
        assert len(ds.object_tables.sources) == args.n and (back["source"] == rows["source"]).all()
        attrs = json.loads((path / "zarr.json").read_text())["attributes"]["galaug"]["objects"]
        print(f"{args.n} rows, {args.n} source files: objects/ {size(path / 'objects') / 1e6:.1f} MB on disk "
              f"(sources {size(path / 'objects' / 'sources') / 1e6:.1f} MB), attributes "
              f"{len(json.dumps(attrs))} bytes")
        print(f"write {write:.2f} s (with the images), read the table {read:.2f} s, count it (galaug info) "
              f"{count:.2f} s; counts {counts}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
