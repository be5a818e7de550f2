"""Write a folder of FITS galaxy cutouts, as a survey cutout service would, to try examples/own_fits.sh on.

The galaxies come from galaug's ``bulgedisk`` simulator (bulge + disk +
star-forming knots, Moffat PSF, sky noise; fluxes in nJy). Each galaxy is
one file, with the headers real cutouts carry::

    python examples/make_fake_cutouts.py cutouts/ -n 200                  # 64x64 g,r,i,z, one HDU per band
    python examples/make_fake_cutouts.py cutouts/ -n 200 --layout cube    # one (C, H, W) cube per file
    python examples/make_fake_cutouts.py cutouts/ -n 40 --size 32 --bands g,r,i --gzip --nan 2
    python examples/make_fake_cutouts.py frames/ -n 200 --frame 2000      # g,r,i,z frames + catalog.csv

``--layout mef`` (the default) writes an empty primary HDU (object name
and position) followed by one image extension per band with ``EXTNAME`` and
``FILTER`` set to the band, ``BUNIT = 'nJy'`` and a celestial TAN WCS whose
``CDELT`` gives the pixel scale. ``--layout cube`` writes the (C, H, W)
cube in the primary HDU with ``BAND1..BANDn`` naming its planes.
``galaug ingest`` reads the band names, the flux unit and the pixel scale
from these headers. ``--nan K`` blanks a corner of K cutouts with NaN, as
happens at survey edges, to exercise ``galaug ingest --on-bad``.

``--frame N`` writes a survey frame instead: the ``-n`` galaxies (drawn
without noise, centred) placed at random in one N x N frame per band,
``frame_g.fits``, ``frame_r.fits``, ... (one image HDU each, with
``FILTER``, ``BUNIT`` and a TAN WCS; all on one pixel grid), plus the sky
noise, and ``catalog.csv`` with the ``id,ra,dec`` of every galaxy's
centre. Galaxies lie at least a cutout apart; some are placed so close
to the edge that ``galaug ingest --cutouts catalog.csv --size SIZE``
skips them. The same frames serve ``galaug ingest --detect``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from galaug.sources.bulgedisk import BulgeDisk, BulgeDiskConfig, ZERO_POINT_NJY

FIELD = (150.1, 2.2)  # RA, Dec (deg) around which the fake cutouts sit


def celestial_header(ra: float, dec: float, *, size: int, pixel_scale: float) -> fits.Header:
    """A TAN WCS centred on (ra, dec) with square pixels of ``pixel_scale`` arcsec (north up, east left)."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    wcs.wcs.cdelt = [-pixel_scale / 3600, pixel_scale / 3600]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.equinox = 2000.0
    return wcs.to_header()


def cutout_hdus(image: np.ndarray, bands: list[str], *, name: str, ra: float, dec: float, layout: str,
                cfg: BulgeDiskConfig) -> fits.HDUList:
    """The HDUs of one cutout: ``image`` is (C, H, W) float32 in nJy."""
    size = image.shape[-1]
    wcs = celestial_header(ra, dec, size=size, pixel_scale=cfg.pixel_scale)
    common = [("BUNIT", "nJy", "pixel unit"), ("MAGZP", ZERO_POINT_NJY, "AB zero point of 1 pixel unit"),
              ("TELESCOP", "galaug", "simulated: galaug bulgedisk")]
    primary = fits.PrimaryHDU()
    primary.header["OBJECT"] = (name, "cutout name")
    primary.header["RA"] = (ra, "[deg] cutout centre")
    primary.header["DEC"] = (dec, "[deg] cutout centre")
    psf = dict(zip(bands, cfg.per_band("psf_fwhm")))
    sky = dict(zip(bands, cfg.per_band("sky_sigma")))
    if layout == "cube":
        primary.data = image
        primary.header.update(wcs)
        primary.header.extend(common)
        primary.header["NBANDS"] = (len(bands), "planes of the cube")
        for i, band in enumerate(bands, start=1):
            primary.header[f"BAND{i}"] = (band, f"filter of plane {i}")
        return fits.HDUList([primary])
    hdus = [primary]
    for band, plane in zip(bands, image):
        hdu = fits.ImageHDU(plane, name=band)
        hdu.header.update(wcs)
        hdu.header.extend(common)
        hdu.header["FILTER"] = (band, "filter")
        hdu.header["PSFFWHM"] = (psf[band], "[arcsec] PSF FWHM")
        hdu.header["SKYSIG"] = (sky[band], "[nJy] sky noise per pixel")
        hdus.append(hdu)
    return fits.HDUList(hdus)


def write_frames(out: Path, *, n: int, frame: int, bands: list[str], cfg: BulgeDiskConfig, seed: int,
                 gzip: bool) -> int:
    """``n`` galaxies in one ``frame`` x ``frame`` frame per band, and their catalogue; how many lie by an edge."""
    size = cfg.image_size
    galaxies = BulgeDisk(dataclasses.replace(cfg, sky_sigma=(0.0,), neighbours=0.0, max_offset=0.0))
    rng = np.random.default_rng([seed, 1])
    lo, hi = size // 4, frame - size // 4  # centres this close to the edge: some stamps reach past it
    centres: list[tuple[int, int]] = []
    for _ in range(1000 * n):
        if len(centres) == n:
            break
        x, y = (int(v) for v in rng.integers(lo, hi, size=2))
        if all(max(abs(x - a), abs(y - b)) >= size for a, b in centres):
            centres.append((x, y))
    else:
        sys.exit(f"Error: {n} galaxies at least {size} pixels apart do not fit in {frame}x{frame}; "
                 "use a larger --frame")
    planes = np.zeros((len(bands), frame, frame), dtype=np.float64)
    half = size // 2  # the stamp of a galaxy centred at (x, y) covers x - half .. x - half + size - 1
    for start in range(0, n, 32):
        images, _ = galaxies.draw(range(start, min(start + 32, n)), seed=seed)
        for image, (x, y) in zip(images, centres[start:start + 32]):
            x0, y0 = x - half, y - half
            ys, xs = slice(max(y0, 0), min(y0 + size, frame)), slice(max(x0, 0), min(x0 + size, frame))
            planes[:, ys, xs] += image[:, ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    for plane, sigma in zip(planes, cfg.per_band("sky_sigma")):
        plane += rng.normal(0.0, sigma, size=plane.shape)
    header = celestial_header(*FIELD, size=frame, pixel_scale=cfg.pixel_scale)
    wcs = WCS(header)
    suffix = ".fits.gz" if gzip else ".fits"
    for band, plane in zip(bands, planes.astype(np.float32)):
        hdu = fits.PrimaryHDU(plane, header=header)
        hdu.header["FILTER"] = (band, "filter")
        hdu.header["BUNIT"] = ("nJy", "pixel unit")
        hdu.header["MAGZP"] = (ZERO_POINT_NJY, "AB zero point of 1 pixel unit")
        hdu.header["TELESCOP"] = ("galaug", "simulated: galaug bulgedisk")
        hdu.writeto(out / f"frame_{band}{suffix}")
    # the centre of a galaxy drawn on an even stamp lies between its two middle pixels: x - half + (size - 1) / 2
    px = np.array([x - half + (size - 1) / 2 for x, _ in centres])
    py = np.array([y - half + (size - 1) / 2 for _, y in centres])
    ra, dec = wcs.pixel_to_world_values(px, py)
    rows = [f"gal{k:05d},{float(a)!r},{float(d)!r}" for k, (a, d) in enumerate(zip(ra, dec))]
    (out / "catalog.csv").write_text("id,ra,dec\n" + "\n".join(rows) + "\n")
    near = [(x, y) for x, y in centres if min(x, y) < half or max(x, y) > frame - size + half]
    return len(near)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output", help="folder to create")
    parser.add_argument("-n", type=int, default=200, help="number of cutouts (default 200)")
    parser.add_argument("--size", type=int, default=64, help="cutout size in pixels (default 64)")
    parser.add_argument("--bands", default="g,r,i,z", help="any of g,r,i,z (default g,r,i,z)")
    parser.add_argument("--pixel-scale", type=float, default=0.2, help="arcsec per pixel (default 0.2)")
    parser.add_argument("--layout", choices=("mef", "cube"), default="mef",
                        help="one image HDU per band (default) or one (C, H, W) cube")
    parser.add_argument("--gzip", action="store_true", help="write .fits.gz files")
    parser.add_argument("--nan", type=int, default=0, metavar="K", help="blank a corner of K cutouts with NaN")
    parser.add_argument("--frame", type=int, default=None, metavar="N",
                        help="place the galaxies in one N x N frame per band and write catalog.csv (id,ra,dec)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    args = parser.parse_args(argv)

    out = Path(args.output)
    if out.exists():
        if not args.overwrite:
            sys.exit(f"Error: {out} exists (use --overwrite)")
        shutil.rmtree(out)
    if args.frame is not None and (args.nan or args.layout != "mef"):
        sys.exit("Error: --nan and --layout apply to cutouts, not to --frame")
    if args.frame is not None and args.frame < 2 * args.size:
        sys.exit(f"Error: --frame {args.frame} is too small for cutouts of {args.size} pixels "
                 f"(at least {2 * args.size})")
    bands = [b.strip() for b in args.bands.split(",") if b.strip()]
    cfg = BulgeDiskConfig(image_size=args.size, pixel_scale=args.pixel_scale, bands=tuple(bands))
    if args.frame is not None:
        out.mkdir(parents=True)
        near = write_frames(out, n=args.n, frame=args.frame, bands=bands, cfg=cfg, seed=args.seed, gzip=args.gzip)
        print(f"wrote {len(bands)} frames of {args.frame}x{args.frame} pixels ({','.join(bands)}) with {args.n} "
              f"galaxies ({near} within {args.size // 2} pixels of an edge) and catalog.csv to {out}/")
        return
    simulator = BulgeDisk(cfg)
    rng = np.random.default_rng(args.seed)
    blanked = set(rng.choice(args.n, size=min(args.nan, args.n), replace=False).tolist())
    out.mkdir(parents=True)
    suffix = ".fits.gz" if args.gzip else ".fits"
    for start in range(0, args.n, 32):
        images, _ = simulator.draw(range(start, min(start + 32, args.n)), seed=args.seed)
        for row, image in enumerate(images.astype(np.float32), start=start):
            if row in blanked:
                image[:, : args.size // 4, : args.size // 4] = np.nan  # off the survey's footprint
            ra = FIELD[0] + rng.uniform(-0.5, 0.5)
            dec = FIELD[1] + rng.uniform(-0.5, 0.5)
            name = f"gal{row:05d}"
            hdul = cutout_hdus(image, bands, name=name, ra=ra, dec=dec, layout=args.layout, cfg=cfg)
            hdul.writeto(out / f"{name}{suffix}")
    print(f"wrote {args.n} cutouts of {args.size}x{args.size} pixels in {','.join(bands)} "
          f"({args.layout}{', gzipped' if args.gzip else ''}; {len(blanked)} with NaN pixels) to {out}/")


if __name__ == "__main__":
    main()
