"""Make a small real-galaxy dataset from the Hubble Deep Field image shipped with scikit-image.

The image is an 8-bit RGB composite of the WFPC2 F450W, F606W and F814W
exposures. This script finds the brightest sources, cuts a stamp around
each, and writes them as a galaug dataset with the Python API, the way a
user would ingest cutouts of their own::

    python examples/hubble_deep_field.py hdf.zarr --size 48 -n 120

The pixel values are display counts of the composite, not calibrated
fluxes, so the flux unit is left unknown.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from galaug import create_dataset, make_entry

BANDS = ("F450W", "F606W", "F814W")  # blue to red; the RGB image stores them red first


def find_stamps(image: np.ndarray, *, size: int, n: int) -> list[tuple[int, int]]:
    """Centres (y, x) of the ``n`` brightest peaks whose ``size`` stamps fit and do not overlap much."""
    light = ndimage.gaussian_filter(image.sum(axis=0), 2.0)
    peaks = (light == ndimage.maximum_filter(light, size=size // 2)) & (light > np.percentile(light, 90))
    ys, xs = np.nonzero(peaks)
    order = np.argsort(light[ys, xs])[::-1]
    half = size // 2
    chosen: list[tuple[int, int]] = []
    for y, x in zip(ys[order], xs[order]):
        if half <= y < image.shape[1] - half and half <= x < image.shape[2] - half:
            if all(max(abs(y - cy), abs(x - cx)) >= half for cy, cx in chosen):
                chosen.append((int(y), int(x)))
        if len(chosen) == n:
            break
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("-n", type=int, default=120)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    from skimage.data import hubble_deep_field

    rgb = hubble_deep_field().astype(np.float32)          # (H, W, 3), red first
    cube = np.ascontiguousarray(rgb[..., ::-1].transpose(2, 0, 1))[:, ::-1]  # (3, H, W), blue first, y up
    centres = find_stamps(cube, size=args.size, n=args.n)
    half = args.size // 2
    stamps = np.stack([cube[:, y - half:y + half, x - half:x + half] for y, x in centres])
    entry = make_entry("ingest", plugin="example:hubble-deep-field", config={"size": args.size, "n": args.n},
                       source="skimage.data.hubble_deep_field", centres=centres)
    with create_dataset(args.output, bands=BANDS, image_size=args.size, provenance=entry,
                        overwrite=args.overwrite) as writer:
        writer.append(stamps)
    print(f"wrote {args.output}: {len(stamps)} stamps of {args.size}x{args.size} in {', '.join(BANDS)}")


if __name__ == "__main__":
    main()
