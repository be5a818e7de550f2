"""Reading and validating galaug datasets (Zarr v3 groups)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from galaug.data import _format as fmt
from galaug.errors import DatasetError

__all__ = ["Dataset", "open_dataset"]


class Dataset:
    """A validated, read-only galaug dataset.

    Use :func:`open_dataset` to get one. Arrays are read in contiguous row
    ranges (:meth:`read`, :meth:`iter_blocks`), never one sample per call.

    Attributes
    ----------
    path : Path
    id : str
        Unique id, referenced by the provenance of datasets made from this one.
    bands : tuple of str
    image_shape : tuple of int
        ``(C, H, W)``.
    pixel_scale : astropy.units.Quantity or None
    flux_unit : str or None
    param_names, param_units : tuple of str
        Empty when the dataset has no ``params``.
    latent_dim : int or None
        Width of ``latents`` (the generator latent w of generated samples).
    z_dim : int or None
        Width of ``z`` (the prior sample each generated image came from).
    clean_shape : tuple of int or None
        ``(C, H, W)`` of the ``clean`` member (the undegraded images paired
        with ``images`` by ``galaug degrade``), or None.
    provenance : list of dict
        One entry per step, oldest first; the last one wrote this dataset.
    chunk_rows : int
        Samples per chunk of ``images``.
    """

    def __init__(self, path: Path, group: zarr.Group, meta: dict[str, Any]) -> None:
        self.path = path
        self._group = group
        self.meta = meta
        self.id: str = meta["id"]
        self.bands: tuple[str, ...] = tuple(meta["bands"])
        images = group["images"]
        self.image_shape: tuple[int, int, int] = tuple(images.shape[1:])  # type: ignore[assignment]
        self.chunk_rows: int = int(images.chunks[0])
        self.pixel_scale = fmt.pixel_scale_quantity(meta.get("pixel_scale"))
        self.flux_unit: str | None = meta.get("flux_unit")
        self.origin_names: tuple[str, ...] = tuple(meta.get("origin_names", fmt.ORIGIN_NAMES))
        params = meta.get("params") or {}
        self.param_names: tuple[str, ...] = tuple(params.get("names", ()))
        self.param_units: tuple[str, ...] = tuple(params.get("units", ()))
        self.latent_dim: int | None = meta.get("latent_dim")
        self.z_dim: int | None = meta.get("z_dim")
        clean = meta.get("clean_shape")
        self.clean_shape: tuple[int, int, int] | None = tuple(clean) if clean else None  # type: ignore[assignment]
        self.provenance: list[dict[str, Any]] = list(meta.get("provenance", []))
        self._n = int(images.shape[0])

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"<galaug Dataset {str(self.path)!r}: {self._n} x {self.image_shape}, bands {','.join(self.bands)}>"

    @property
    def fields(self) -> tuple[str, ...]:
        """The members present: images, origin, index, and params/latents if stored."""
        return fmt.REQUIRED + tuple(m for m in fmt.OPTIONAL if m in self._group)

    def array(self, name: str) -> zarr.Array:
        """The Zarr array of member ``name``."""
        if name not in self.fields:
            raise DatasetError(f"{self.path}: has no member {name!r} (members: {', '.join(self.fields)})")
        return self._group[name]  # type: ignore[return-value]

    def read(self, start: int = 0, stop: int | None = None, *,
             fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` of each field (all fields by default), in one read per field."""
        stop = self._n if stop is None else min(stop, self._n)
        return {f: self.array(f)[start:stop] for f in (fields or self.fields)}

    def iter_blocks(self, *, rows: int | None = None,
                    fields: Sequence[str] | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield ``(start, arrays)`` over consecutive blocks of ``rows`` (a chunk by default)."""
        rows = rows or self.chunk_rows
        for start in range(0, self._n, rows):
            yield start, self.read(start, start + rows, fields=fields)

    def origin_counts(self) -> dict[str, int]:
        """Number of samples by origin name."""
        counts = np.zeros(len(self.origin_names), dtype=np.int64)
        for _, block in self.iter_blocks(rows=max(self.chunk_rows, 65536), fields=("origin",)):
            counts += np.bincount(block["origin"], minlength=len(self.origin_names))[: len(counts)]
        return {name: int(c) for name, c in zip(self.origin_names, counts)}

    def summary(self) -> dict[str, Any]:
        """What ``galaug info`` shows, as a JSON-serialisable dict."""
        return {
            "path": str(self.path),
            "id": self.id,
            "n": self._n,
            "image_shape": list(self.image_shape),
            "bands": list(self.bands),
            "pixel_scale": self.meta.get("pixel_scale"),
            "flux_unit": self.flux_unit,
            "origin_counts": self.origin_counts(),
            "params": [{"name": n, "unit": u} for n, u in zip(self.param_names, self.param_units)],
            "latent_dim": self.latent_dim,
            "z_dim": self.z_dim,
            "clean_shape": list(self.clean_shape) if self.clean_shape else None,
            "chunk_rows": self.chunk_rows,
            "provenance": self.provenance,
        }


def _fail(path: Path, why: str) -> DatasetError:
    return DatasetError(f"{path}: {why}")


def _check_member(path: Path, group: zarr.Group, name: str, shape: tuple, dtype: str) -> None:
    if name not in group:
        raise _fail(path, f"missing member {name!r}")
    arr = group[name]
    if not isinstance(arr, zarr.Array):
        raise _fail(path, f"member {name!r} is a group, expected an array")
    if str(arr.dtype) != dtype:
        raise _fail(path, f"member {name!r} has dtype {arr.dtype}, expected {dtype}")
    if tuple(arr.shape) != shape:
        expected = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise _fail(path, f"member {name!r} has shape {tuple(arr.shape)}, expected {expected}")


def open_dataset(path: str | Path) -> Dataset:
    """Open a galaug dataset, checking its schema.

    Raises
    ------
    DatasetError
        Saying exactly what is wrong: no such path, not a Zarr store, not a
        galaug dataset, a missing member, a wrong shape or dtype.
    """
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such file or directory")
    if not path.is_dir() or not (path / "zarr.json").is_file():
        raise _fail(path, "not a galaug dataset (expected a Zarr v3 group directory with zarr.json)")
    try:
        meta_json = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError) as exc:
        raise _fail(path, f"unreadable zarr.json ({exc})") from None
    if meta_json.get("zarr_format") != 3 or meta_json.get("node_type") != "group":
        raise _fail(path, "not a galaug dataset (zarr.json does not describe a Zarr v3 group)")
    meta = meta_json.get("attributes", {}).get(fmt.ATTR)
    if not isinstance(meta, dict):
        raise _fail(path, f"not a galaug dataset (no {fmt.ATTR!r} attributes; written by another tool?)")
    version = meta.get("format_version")
    if version != fmt.FORMAT_VERSION:
        raise _fail(path, f"format version {version!r} is not supported (this galaug reads {fmt.FORMAT_VERSION})")
    for key in ("id", "bands", "n"):
        if key not in meta:
            raise _fail(path, f"attribute {fmt.ATTR}.{key} is missing")
    try:
        group = zarr.open_group(store=str(path), mode="r")
    except Exception as exc:  # zarr raises several types for broken metadata
        raise _fail(path, f"cannot open as a Zarr group ({type(exc).__name__}: {exc})") from None
    n = int(meta["n"])
    if "images" not in group:
        raise _fail(path, "missing member 'images'")
    images = group["images"]
    if not isinstance(images, zarr.Array) or images.ndim != 4:
        raise _fail(path, f"member 'images' must be a 4-d array (N, C, H, W), got shape {getattr(images, 'shape', None)}")
    c, h, w = images.shape[1:]
    if len(meta["bands"]) != c:
        raise _fail(path, f"attribute bands lists {len(meta['bands'])} bands but images have {c} channels")
    _check_member(path, group, "images", (n, c, h, w), fmt.DTYPES["images"])
    _check_member(path, group, "origin", (n,), fmt.DTYPES["origin"])
    _check_member(path, group, "index", (n,), fmt.DTYPES["index"])
    params = meta.get("params")
    if params:
        _check_member(path, group, "params", (n, len(params["names"])), fmt.DTYPES["params"])
    elif "params" in group:
        raise _fail(path, "member 'params' exists but attribute params (names, units) is missing")
    latent_dim = meta.get("latent_dim")
    if latent_dim:
        _check_member(path, group, "latents", (n, int(latent_dim)), fmt.DTYPES["latents"])
    elif "latents" in group:
        raise _fail(path, "member 'latents' exists but attribute latent_dim is missing")
    z_dim = meta.get("z_dim")
    if z_dim:
        _check_member(path, group, "z", (n, int(z_dim)), fmt.DTYPES["z"])
    elif "z" in group:
        raise _fail(path, "member 'z' exists but attribute z_dim is missing")
    clean_shape = meta.get("clean_shape")
    if clean_shape:
        if len(clean_shape) != 3 or clean_shape[0] != c:
            raise _fail(path, f"attribute clean_shape {clean_shape} must be [C, H, W] with C = {c}")
        _check_member(path, group, "clean", (n, *clean_shape), fmt.DTYPES["clean"])
    elif "clean" in group:
        raise _fail(path, "member 'clean' exists but attribute clean_shape is missing")
    return Dataset(path, group, meta)
