"""``galaug degrade``: a degraded copy of a dataset, paired with the clean images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaug.data.dataset import Dataset, open_dataset
from galaug.data.provenance import make_entry
from galaug.data.writer import check_output, like
from galaug.distributed import sharded_writer
from galaug.degrade.pipeline import Pipeline, parse_pipeline
from galaug.degrade.seeds import derive_seeds
from galaug.devices import resolve_device
from galaug.errors import GalaugError
from galaug.progress import progress

if TYPE_CHECKING:
    from galaug.registry import Registry

__all__ = ["degrade_dataset"]


def degrade_dataset(src: str | Path | Dataset, out: str | Path, pipeline: str | Pipeline, *, seed: int = 0,
                    batch_size: int = 256, device: Any = "auto", overwrite: bool = False,
                    copy_clean: bool = False, codec: str | None = None,
                    registry: Registry | None = None) -> Dataset:
    """Write a degraded copy of ``src`` to ``out``, with the undegraded images as ``clean``.

    Sample ``r`` (its row in ``src``) is degraded with the seed
    ``derive_seeds(seed, r)``, so the output does not depend on
    ``batch_size``; it does depend on the device type, since CPU and CUDA
    random streams differ (the device is recorded in the provenance).

    Parameters
    ----------
    src : str, Path or Dataset
        The dataset to degrade.
    out : str or Path
        The new dataset; it appears only when complete.
    pipeline : str or Pipeline
        A spec such as ``"psf:gaussian(sigma=2)|noise:gaussian(std=4)"``.
        Lengths given as angles (``fwhm=0.8arcsec``) are converted to pixels
        with ``src``'s pixel scale (:meth:`Pipeline.in_pixels`).
    seed : int
        Seed of every random draw (recorded in the provenance).
    batch_size : int
        Images degraded at once.
    device : str or torch.device
        ``"auto"``: CUDA if available, else the CPU.
    overwrite : bool
        Replace an existing ``out`` once the new one is complete.
    copy_clean : bool
        Store a copy of the clean images in ``out``, so that it travels
        alone. By default ``out`` refers to them where they are (the input's
        images, or its own clean member or reference): path, dataset id and
        row map, checked when ``out`` is opened.
    codec : str, optional
        Chunk codec of ``out`` (see docs/dataset-format.md).
    registry : galaug.registry.Registry, optional
        Where the pipeline's degradations are looked up (the process-wide one by default).

    Returns
    -------
    Dataset
        The opened output. ``images`` are degraded; ``clean`` reads the
        input's ``clean`` member if it has one (the images before any
        degradation), else the input's images, by reference unless ``copy_clean``. Origin, params and latents
        are copied, ``index`` is the row in ``src``, and the pixel scale is
        multiplied by the pipeline's pixel-scale factor.

    Raises
    ------
    GalaugError
        For a bad spec, a step that does not fit the images, an angle in the
        spec when ``src``'s pixel scale is unknown, a missing input, an
        existing output or an unavailable device; nothing is written.
    """
    import torch

    if batch_size < 1:
        raise GalaugError(f"batch size must be at least 1, got {batch_size}")
    if not isinstance(pipeline, Pipeline):
        pipeline = parse_pipeline(pipeline, registry=registry)
    source = src if isinstance(src, Dataset) else open_dataset(src)
    given, pipeline = pipeline, pipeline.in_pixels(source.pixel_scale, of=str(source.path))
    out = check_output(out, overwrite=overwrite)
    dev = resolve_device(device)
    out_shape = pipeline.output_shape(source.image_shape)
    kwargs = like(source)
    kwargs["image_size"] = out_shape[1:]
    kwargs["clean_size"] = source.clean_shape[1:] if source.clean_shape else source.image_shape[1:]
    factor = pipeline.pixel_scale_factor()
    if source.pixel_scale is not None:
        kwargs["pixel_scale"] = source.pixel_scale * factor
    entry = make_entry("degrade", seed=seed, config={
        "pipeline": pipeline.spec,
        "steps": pipeline.config_dict(),
        "pixel_scale_factor": factor,
        "device": dev.type,
        "flux_unit": source.flux_unit,  # the unit of noise levels (std, sky_level) and of gains' denominators
    })
    if pipeline.conversions:
        entry["config"]["given"] = given.spec
        entry["config"]["lengths"] = list(pipeline.conversions)
    maps = _maps(pipeline, source, kwargs, entry)
    # the clean images: the input's clean member (stored or itself a reference), else its images
    kwargs["clean_ref"] = source.clean_ref or (
        {"path": str(source.path), "id": source.id, "member": "clean" if source.clean_shape else "images"})
    if copy_clean or Path(kwargs["clean_ref"]["path"]).resolve() == out.resolve():
        kwargs["clean_ref"] = None  # a copy travels alone (and replacing the input must not lose them)
    fields = [f for f in source.fields if f in ("images", "origin", "params", "latents", "objects")]
    fields += [f for f in ("ivar", "mask") if kwargs[f]]
    if kwargs["clean_ref"] is None:
        fields += ["clean"] if source.clean_shape else []
    elif source.clean_ref:
        fields += ["clean_rows"]  # a reference of a reference: the rows of the original
    entry["config"]["clean"] = "copy" if kwargs["clean_ref"] is None else "reference"
    with sharded_writer(out, len(source), parents=[source], overwrite=overwrite, provenance=entry, codec=codec,
                        **kwargs) as (writer, lo, hi):
        bar = progress(total=hi - lo, desc="degrade")
        for start, block in source.iter_blocks(rows=batch_size, fields=fields, start=lo, stop=hi):
            rows = np.arange(start, start + len(block["images"]))
            images = torch.from_numpy(block["images"]).to(dev)
            seeds = torch.from_numpy(derive_seeds(seed, rows)).to(dev)
            if kwargs["ivar"] or kwargs["mask"]:
                degraded, carried = _apply_with_maps(pipeline, images, seeds, block, dev)
            else:
                degraded, carried = pipeline.apply(images, seeds).cpu().numpy(), {}
            if "objects" in block:
                carried["objects"] = _moved(block["objects"], maps["grid"])
            if kwargs["clean_ref"] is None:
                clean = {"clean": block.get("clean", block["images"])}
            else:
                clean = {"clean_rows": block.get("clean_rows", rows)}
            writer.append(degraded, origin=block["origin"], index=rows, **clean, **carried,
                          **{k: block[k] for k in ("params", "latents") if k in block})
            bar.update(len(rows))
        bar.close()
    return open_dataset(out)


def _maps(pipeline: Pipeline, source: Dataset, kwargs: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """What of ``source``'s ivar, mask and WCS passes through ``pipeline``: set on the writer's ``kwargs``,
    and recorded (with a note for each that does not) in the provenance ``entry``."""
    if not (source.has_ivar or source.has_mask or source.has_objects):
        return {"grid": None}
    carried = pipeline.carried(source.image_shape)
    kwargs["ivar"] = source.has_ivar and carried["variance"]
    kwargs["mask"] = source.has_mask and carried["mask"]
    has = {"ivar": source.has_ivar, "mask": source.has_mask, "WCS": source.has_objects}
    entry["notes"] = [n for n in carried["notes"] if has[n.split(" ", 1)[0]]]
    entry["carried"] = {"ivar": kwargs["ivar"], "mask": kwargs["mask"],
                        "wcs": None if not source.has_objects else carried["grid"] is not None}
    return carried


def _apply_with_maps(pipeline: Pipeline, images: Any, seeds: Any, block: dict[str, np.ndarray],
                     dev: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The degraded images, and the ivar and mask of ``block`` carried through the pipeline."""
    import torch

    variance = mask = None
    if "ivar" in block:
        ivar = torch.from_numpy(block["ivar"]).to(dev, torch.float64)
        variance = torch.where(ivar > 0, 1 / ivar, torch.inf)  # an ivar of 0: unknown, infinite variance
    if "mask" in block:
        mask = torch.from_numpy(block["mask"].astype(np.int32)).to(dev)
    degraded, variance, mask = pipeline.apply_with_maps(images, seeds, variance=variance, mask=mask)
    out = {}
    if variance is not None:
        out["ivar"] = (1 / variance).to(torch.float32).cpu().numpy()  # infinite variance: 0
    if mask is not None:
        out["mask"] = mask.cpu().numpy().astype(np.uint16)
    return degraded.cpu().numpy(), out


def _moved(rows: np.ndarray, grid: Any) -> np.ndarray:
    """The objects ``rows`` with their WCS on the degraded images' grid (dropped when it is not known)."""
    from galaug.data import objects as obj

    rows = rows.copy()
    if grid is None:
        return obj.drop_wcs(rows)
    return rows if grid == ((1.0, 0.0), (1.0, 0.0)) else obj.regrid(rows, grid)
