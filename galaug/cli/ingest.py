"""``galaug ingest``: read image files (FITS, HDF5, NumPy) into a dataset."""

from __future__ import annotations

import dataclasses

import click

from galaug.cli.options import codec_option, config_options, option_names, overwrite_option

__all__ = ["ingest_cmd"]


@click.command("ingest")
@click.argument("src")
@click.argument("out")
@click.option("--format", "format_", default="auto", show_default=True, metavar="auto|fits|hdf5|npy|NAME",
              help="Reader plugin; auto chooses by file name.")
@click.option("--bands", default=None, metavar="g,r,i",
              help="Band names, comma-separated [default: from the files, else b0,b1,...].")
@click.option("--size", type=click.IntRange(min=1), default=None,
              help="Bring every image to SIZE x SIZE pixels [default: keep the shape, which all must share].")
@click.option("--fit", type=click.Choice(["crop", "resize"]), default=None,
              help="How images of another size than --size are brought to it: crop: the centre SIZE x SIZE pixels; "
                   "resize: flux-conserving resampling (scales the pixel scale) [default: they are not; "
                   "such an image is bad].")
@click.option("--layout", type=click.Choice(["mmu", "galaxiesml"]), default=None,
              help="An HDF5 survey layout: mmu (Multimodal Universe) or galaxiesml; bands, pixel scale and object "
                   "ids come from its members.")
@click.option("--hdu", default=None, metavar="NAME|NAME,VER|INDEX",
              help="The FITS HDU to read, e.g. SCI, SCI,2 or 1 [default: the science images; error, quality "
                   "and weight extensions (ERR, DQ, WHT, ...) are never bands].")
@click.option("--sci", default=None, metavar="EXTNAME",
              help="EXTNAME of the FITS science images where a file has several kinds [default: SCI].")
@click.option("--err", default=None, metavar="EXTNAME",
              help='EXTNAME of the FITS error maps, stored as ivar = 1/ERR^2 ("": none) [default: ERR].')
@click.option("--dq", default=None, metavar="EXTNAME",
              help='EXTNAME of the FITS data-quality flags, stored as the mask ("": none) [default: DQ].')
@click.option("--on-bad", type=click.Choice(["reject", "fill", "skip"]), default="reject", show_default=True,
              help="Images with NaN/Inf pixels: fail naming them, replace the pixels with --fill-value, or leave "
                   "the images out (skip also leaves out unreadable files and images that do not fit).")
@click.option("--fill-value", type=float, default=0.0, show_default=True,
              help="Value of NaN/Inf pixels with --on-bad fill.")
@click.option("--pixel-scale", default=None, metavar='"0.2 arcsec"',
              help="Pixel scale of the input files, overriding the headers [default: from the headers; "
                   "different scales are an error, none is unknown].")
@click.option("--group", default=None, metavar='"{id}_{band}.fits"',
              help="One image per object from one file per band, named by this pattern ({id}, {band}; * matches "
                   "anything) or listed in a CSV manifest (a value ending in .csv: columns id,band,path, paths "
                   "relative to its folder); bands in --bands order, else by wavelength.")
@click.option("--cutouts", default=None, metavar="CATALOG.csv",
              help="Cut a --size stamp per catalogue row (ra,dec in degrees through the WCS, or x,y pixels; id "
                   "optional) from the FITS frames of SRC (one, or one per band); edge objects are skipped.")
@click.option("--detect", is_flag=True,
              help="Like --cutouts, at the sources photutils finds on the sum of the frames' bands (on the first "
                   "frame's grid), brightest first.")
@click.option("--detect-threshold", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --detect: threshold in units of the background RMS, on the image smoothed by a Gaussian "
                   "of FWHM 3 pixels [default: 1.5].")
@click.option("--detect-npixels", type=click.IntRange(min=1), default=None,
              help="With --detect: least number of connected pixels of a source [default: 10].")
@click.option("--deblend", is_flag=True,
              help="With --detect: split blended sources (photutils deblend_sources).")
@click.option("--resample", is_flag=True,
              help="Resample every image, conserving flux, from the pixel scale its file declares to --pixel-scale "
                   "(for files of mixed scales).")
@click.option("--flux-unit", default=None, metavar="UNIT",
              help="Unit of the pixel values, e.g. nJy [default: BUNIT when all agree, else unknown].")
@click.option("--to-unit", default=None, metavar="UNIT",
              help="Convert the pixel values to UNIT (e.g. nJy) from each file's BUNIT (or --flux-unit) with "
                   "astropy.units; nanomaggy = 3.631 uJy; counts need --zero-point.")
@click.option("--zero-point", default=None, metavar="ZP",
              help="With --to-unit, for files in counts (adu, ct, electron, or per second): the AB magnitude of "
                   "one count, or one per band (27,27.1,26.9): flux_nJy = counts * 10**((31.4 - ZP) / 2.5).")
@config_options
@overwrite_option
@codec_option
def ingest_cmd(src: str, out: str, format_: str, bands: str | None, size: int | None, fit: str | None,
               layout: str | None, hdu: str | None, sci: str | None, err: str | None, dq: str | None, on_bad: str, fill_value: float, pixel_scale: str | None, group: str | None,
               cutouts: str | None, detect: bool, detect_threshold: float | None, detect_npixels: int | None,
               deblend: bool, resample: bool,
               flux_unit: str | None, to_unit: str | None, zero_point: str | None,
               config_file: str | None, sets: tuple[str, ...], overwrite: bool) -> None:
    """Read the images of SRC (a file, a folder or a glob) into the new dataset OUT.

    Every image is brought to one shape (--size, --fit); band names, pixel
    scale and flux unit come from the options or the file headers. What is
    skipped or filled is printed and recorded in the provenance. The reader's
    options (see `galaug config source fits`) are set with --config/--set.
    """
    from galaug.config import resolve_config
    from galaug.data.writer import check_output
    from galaug.errors import GalaugError
    from galaug.sources.ingest import find_inputs, ingest, reader_class

    manager = click.get_current_context().find_root().obj
    check_output(out, overwrite=overwrite)
    with option_names():
        name, _ = find_inputs(src, format=format_, manager=manager)
    config = resolve_config(reader_class(name, manager=manager).Config, file=config_file, sets=sets)
    if hdu is not None:
        if not hasattr(config, "hdu"):
            raise GalaugError(f"--hdu is an option of the fits reader, not of {name!r}")
        config = dataclasses.replace(config, hdu=hdu)
    for key, value in (("sci", sci), ("err", err), ("dq", dq)):
        if value is None:
            continue
        if not hasattr(config, key):
            raise GalaugError(f"--{key} is an option of the fits reader, not of {name!r}")
        try:
            config = dataclasses.replace(config, **{key: value})
        except ValueError as exc:
            raise GalaugError(f"--{key} {value!r}: {exc}") from None
    if layout is not None:
        if not hasattr(config, "layout"):
            raise GalaugError(f"--layout is an option of the hdf5 reader, not of {name!r}")
        config = dataclasses.replace(config, layout=layout)
    with option_names():  # "use on_bad=..." as "use --on-bad=..."
        report = ingest(src, out, format=name, bands=bands, size=size, fit=fit, on_bad=on_bad,
                        fill_value=fill_value, pixel_scale=pixel_scale, group=group, cutouts=cutouts,
                        detect=detect, detect_threshold=detect_threshold, detect_npixels=detect_npixels,
                        deblend=deblend, resample=resample,
                        flux_unit=flux_unit, to_unit=to_unit, zero_point=zero_point,
                        config=config,
                        overwrite=overwrite, manager=manager)
    for line in report.lines():
        click.echo(line)
