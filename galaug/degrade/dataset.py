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
        For a bad spec, a step that does not fit the images, a missing input,
        an existing output or an unavailable device; nothing is written.
    """
    import torch

    if batch_size < 1:
        raise GalaugError(f"batch size must be at least 1, got {batch_size}")
    if not isinstance(pipeline, Pipeline):
        pipeline = parse_pipeline(pipeline, registry=registry)
    source = src if isinstance(src, Dataset) else open_dataset(src)
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
    })
    # the clean images: the input's clean member (stored or itself a reference), else its images
    kwargs["clean_ref"] = source.clean_ref or (
        {"path": str(source.path), "id": source.id, "member": "clean" if source.clean_shape else "images"})
    if copy_clean or Path(kwargs["clean_ref"]["path"]).resolve() == out.resolve():
        kwargs["clean_ref"] = None  # a copy travels alone (and replacing the input must not lose them)
    fields = [f for f in source.fields if f in ("images", "origin", "params", "latents")]
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
            degraded = pipeline.apply(images, seeds).cpu().numpy()
            if kwargs["clean_ref"] is None:
                clean = {"clean": block.get("clean", block["images"])}
            else:
                clean = {"clean_rows": block.get("clean_rows", rows)}
            writer.append(degraded, origin=block["origin"], index=rows, **clean,
                          **{k: block[k] for k in ("params", "latents") if k in block})
            bar.update(len(rows))
        bar.close()
    return open_dataset(out)
