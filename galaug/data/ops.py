"""Dataset operations behind ``galaug split`` and ``galaug export``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from galaug import faults
from galaug.progress import progress
from galaug.data import _format as fmt
from galaug.data import objects as obj
from galaug.data.dataset import Dataset, open_dataset
from galaug.data.provenance import make_entry
from galaug.data.writer import DatasetWriter, check_output, commit_path, like, temporary_sibling
from galaug.errors import DatasetError, GalaugError, ParamError
from galaug.ratios import resolve_share

__all__ = ["split_dataset", "export_fits"]


def split_dataset(path: str | Path, train_out: str | Path, val_out: str | Path, *,
                  val: float | int | str = 0.2, seed: int = 0, overwrite: bool = False) -> tuple[Dataset, Dataset]:
    """Split a dataset into disjoint train and validation datasets.

    The validation rows are a uniformly random subset chosen with ``seed``;
    both outputs keep the input's order, and ``index`` holds each sample's
    row in the input. Both are written completely before either is renamed
    into place. A split killed between the two renames leaves one complete
    output; running the same split again (same input, ``val`` and ``seed``)
    replaces it without ``overwrite``, since it writes the same rows.
    """
    src = open_dataset(path)
    train_out, val_out = Path(train_out), Path(val_out)
    if train_out.resolve() == val_out.resolve():
        raise GalaugError("train and validation outputs must be different paths")
    n_val = resolve_share(val, len(src), param="val")
    if n_val == 0 or n_val == len(src):
        raise ParamError("val", "{val} {text} leaves an empty split of {n} samples", text=str(val).strip(), n=len(src))
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(src), dtype=bool)
    is_val[rng.choice(len(src), size=n_val, replace=False)] = True
    entry = dict(step="split", seed=seed, config={"val": str(val)}, n_train=len(src) - n_val, n_val=n_val)
    outs = {"train": train_out, "val": val_out}
    left = _left_by_this_split(src, outs, entry)
    for out in outs.values():
        check_output(out, overwrite=overwrite or out == left)
    writers = [
        DatasetWriter(out, parents=[src], overwrite=overwrite or out == left, **like(src),
                      n=entry["n_val"] if role == "val" else entry["n_train"], provenance=make_entry(**entry, role=role))
        for role, out in outs.items()
    ]
    try:
        bar = progress(total=len(src), desc="split")
        for start, block in src.iter_blocks(fields=src.stored_fields):
            stop = start + len(block["images"])
            rows = np.arange(start, stop)
            for writer, mask in zip(writers, (~is_val[start:stop], is_val[start:stop])):
                sel = mask.nonzero()[0]
                if sel.size:
                    writer.append(block["images"][sel], origin=block["origin"][sel], index=rows[sel],
                                  **{k: block[k][sel] for k in fmt.PER_ROW if k in block})
            bar.update(stop - start)
        bar.close()
        outputs = tuple(w.close() for w in writers)
    except BaseException:
        for w in writers:
            if not w.closed:
                w.abort()
        raise
    return outputs  # type: ignore[return-value]


def _left_by_this_split(src: Dataset, outs: dict[str, Path], entry: dict) -> Path | None:
    """The one output of the pair that this very split left when killed between its two renames, else None.

    It is the only one of the two that exists, and its last provenance entry
    is this split (same input, ``val``, ``seed`` and role).
    """
    there = [(role, out) for role, out in outs.items() if out.exists() or out.is_symlink()]
    if len(there) != 1:
        return None
    role, out = there[0]
    try:
        last = open_dataset(out).provenance[-1]
    except (GalaugError, IndexError, OSError):
        return None
    same = {**{k: entry[k] for k in ("step", "seed", "config", "n_train", "n_val")}, "role": role, "parents": [src.id]}
    return out if all(last.get(k) == v for k, v in same.items()) else None


def export_fits(path: str | Path, out_dir: str | Path, *, limit: int | None = None,
                overwrite: bool = False) -> int:
    """Write one FITS file per image into ``out_dir``; returns the number written.

    Each file holds the (C, H, W) cube in its primary HDU, with the band
    names, pixel scale, flux unit, origin, index, parameters and the
    dataset's provenance in the header; where the dataset has them, the
    image's WCS (``CD`` matrix, the same for every plane), object id
    (``OBJID``), RA/Dec (``RA_OBJ``, ``DEC_OBJ``), source file and HDU
    (``GLSOURCE``, ``GLHDU``), and its inverse variance and mask as the
    image extensions ``IVAR`` and ``MASK``. The folder appears only when complete.
    """
    from astropy.io import fits

    src = open_dataset(path)
    out_dir = check_output(out_dir, overwrite=overwrite, what="folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise DatasetError(f"{out_dir}: exists and is not a folder")
    n = len(src) if limit is None else min(limit, len(src))
    tmp = temporary_sibling(out_dir)
    tmp.mkdir()
    try:
        scale = src.meta.get("pixel_scale")
        history = [json.dumps(e, sort_keys=True) for e in src.provenance]
        bar = progress(total=n, desc="export")
        common = fits.Header()
        try:  # names a FITS header cannot hold (non-ASCII, control characters, '=' in a key) fail here
            common["NBANDS"] = (len(src.bands), "number of bands (axis 3)")
            for i, band in enumerate(src.bands, 1):
                common[f"BAND{i}"] = (band, f"band of plane {i}")
            if src.flux_unit:
                common["BUNIT"] = src.flux_unit
            for name in src.param_names:
                probe = fits.Header()
                probe[f"HIERARCH GALAUG PARAM {name}"] = 0.0
                fits.Card.fromstring(probe.cards[0].image).verify("exception")
                if fits.Card.fromstring(probe.cards[0].image).keyword != f"GALAUG PARAM {name}":
                    raise ValueError(f"parameter name {name!r} does not survive as a FITS keyword")
            common.tostring()
        except (ValueError, fits.VerifyError) as exc:
            raise GalaugError(f"{src.path}: its band or parameter names cannot be written to a FITS header "
                              f"({str(exc).splitlines()[0]})") from None
        tables = src.object_tables
        fields = [f for f in ("images", "origin", "index", "params", "ivar", "mask", "objects") if f in src.fields]
        for start, block in src.iter_blocks(fields=fields):
            for k in range(min(len(block["images"]), n - start)):
                row = start + k
                hdr = common.copy()
                if scale:
                    hdr["PIXSCALE"] = (scale["value"], f"pixel scale [{scale['unit']}]")
                    hdr["PIXUNIT"] = (scale["unit"], "unit of PIXSCALE")
                hdr["GLDSID"] = (src.id, "galaug dataset id")
                hdr["GLROW"] = (row, "row in the galaug dataset")
                hdr["GLINDEX"] = (int(block["index"][k]), "row in the dataset it came from")
                hdr["GLORIGIN"] = (src.origin_names[int(block["origin"][k])], "real or generated")
                if "params" in block:
                    for name, value in zip(src.param_names, block["params"][k]):
                        hdr[f"HIERARCH GALAUG PARAM {name}"] = float(value)
                if "objects" in block:
                    _identity_cards(hdr, block["objects"][k], tables)
                for line in history:
                    hdr.add_history(line)
                hdus = [fits.PrimaryHDU(data=block["images"][k], header=hdr)]
                for kind, name, what in (("ivar", "IVAR", "inverse variance of the primary cube, 0 where unknown"),
                                         ("mask", "MASK", "bit flags of the primary cube, nonzero = bad")):
                    if kind in block:
                        hdus.append(fits.ImageHDU(block[kind][k], name=name))
                        hdus[-1].header["COMMENT"] = what
                fits.HDUList(hdus).writeto(tmp / f"{row:07d}.fits")
                faults.point("export.file")
            bar.update(min(len(block["images"]), n - start))
            if start + len(block["images"]) >= n:
                break
        bar.close()
        commit_path(tmp, out_dir, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return n


def _identity_cards(hdr, row, tables: obj.ObjectTables) -> None:
    """Who the image is, into its header: WCS, OBJID, RA_OBJ/DEC_OBJ, GLSOURCE, GLHDU (those it has)."""
    cards = obj.wcs_cards(row, tables)
    for key, value, comment in cards:
        hdr[key] = (value, comment)
    if cards:  # the cube's third axis, the planes (bands), as a linear axis of step 1
        hdr["CD3_3"] = (1.0, "axis 3: the planes (bands)")
    if row["id"]:
        hdr["OBJID"] = (_header_text(row["id"].decode("utf-8", errors="replace")), "object id")
    if np.isfinite(row["ra"]) and np.isfinite(row["dec"]):
        hdr["RA_OBJ"] = (float(row["ra"]), "[deg] right ascension of the object")
        hdr["DEC_OBJ"] = (float(row["dec"]), "[deg] declination of the object")
    if row["source"] >= 0:
        hdr["GLSOURCE"] = (_header_text(tables.sources[row["source"]]), "file the image was read from")
    if row["hdu"] >= 0:
        hdr["GLHDU"] = (_header_text(tables.hdus[row["hdu"]]), "HDU or member of that file")


def _header_text(text: str) -> str:
    """``text`` as a FITS header value holds it: printable ASCII as it is, anything else escaped (\\u00e9)."""
    return text if text.isascii() and text.isprintable() else text.encode("unicode_escape").decode("ascii")
