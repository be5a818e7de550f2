"""Reading and validating galaug datasets (Zarr v3 groups)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from galaug.data import _format as fmt
from galaug.data import objects as obj
from galaug.errors import DatasetError, describe, short

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
    has_ivar, has_mask : bool
        Whether rows carry ``ivar`` (inverse variance, float32, 0 where
        unknown) and ``mask`` (uint16 bit flags, nonzero = bad), shaped like
        the images.
    has_objects : bool
        Whether rows carry the ``objects`` table (:mod:`galaug.data.objects`):
        source file, HDU, object id, RA/Dec and WCS of each image.
    provenance : list of dict
        One entry per step, oldest first; the last one wrote this dataset.
    chunk_rows : int
        Samples per chunk of ``images``.
    """

    def __init__(self, path: Path, group: zarr.Group, meta: dict[str, Any]) -> None:
        self.path = path
        self._group = group
        self.meta = meta
        # opened once: without consolidated metadata each lookup in the group reads a zarr.json
        self._arrays: dict[str, zarr.Array] = {
            m: group[m] for m in fmt.REQUIRED + fmt.OPTIONAL if m in fmt.REQUIRED or _declared(meta, m)}
        #: Where ``clean`` is stored by reference (``galaug degrade`` without --copy-clean): the resolved
        #: ``{"path", "id", "member"}`` of the dataset whose images they are, else None.
        self.clean_ref: dict[str, Any] | None = None
        self._clean_source: Dataset | None = None
        if meta.get("clean_ref"):
            self._clean_source, self.clean_ref = _resolve_clean_ref(path, meta)
        self.id: str = meta["id"]
        self.bands: tuple[str, ...] = tuple(meta["bands"])
        images = self._arrays["images"]
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
        self.has_ivar: bool = "ivar" in self._arrays
        self.has_mask: bool = "mask" in self._arrays
        self.has_objects: bool = "objects/id" in self._arrays
        self._object_tables: obj.ObjectTables | None = None
        self.provenance: list[dict[str, Any]] = list(meta.get("provenance", []))
        self._n = int(images.shape[0])
        #: Every chunk of every member is stored (written by this galaug), so a missing chunk file is damage.
        self.every_chunk_stored: bool = meta.get(fmt.EVERY_CHUNK_STORED) is True

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"<galaug Dataset {str(self.path)!r}: {self._n} x {self.image_shape}, bands {','.join(self.bands)}>"

    @property
    def fields(self) -> tuple[str, ...]:
        """The members to read: images, origin, index, and params, latents, z, clean, ivar, mask, objects when
        present (``clean`` also when it is stored by reference; ``objects`` for the table's columns)."""
        return tuple(dict.fromkeys("clean" if f == "clean_rows" else f for f in self.stored_fields))

    @property
    def stored_fields(self) -> tuple[str, ...]:
        """The members stored here, as a copy of rows carries them: ``clean_rows`` for a referenced ``clean``,
        ``objects`` for the columns of the objects table."""
        return tuple(dict.fromkeys("objects" if f.startswith("objects/") else f for f in self._arrays))

    @property
    def object_tables(self) -> obj.ObjectTables | None:
        """The tables the ``objects`` rows index (source files, HDUs, WCS frames); None without objects."""
        if not self.has_objects:
            return None
        if self._object_tables is None:
            attrs = self.meta["objects"]
            try:
                sources = obj.decode_names(self._group["objects/sources"][...])
            except Exception as exc:  # a damaged chunk: zarr and the codecs raise several types
                raise DatasetError(f"{self.path}: member 'objects/sources' cannot be read ({describe(exc)})") from None
            self._object_tables = obj.ObjectTables(sources, attrs["hdus"], attrs["frames"])
        return self._object_tables

    def array(self, name: str) -> zarr.Array:
        """The Zarr array of member ``name`` (stored here, see :attr:`stored_fields`)."""
        if name not in self._arrays:
            raise DatasetError(f"{self.path}: has no stored member {name!r} (members: {', '.join(self._arrays)})")
        return self._arrays[name]

    def read(self, start: int = 0, stop: int | None = None, *,
             fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` of each field (all fields by default), in one read per field.

        Raises
        ------
        DatasetError
            Naming the member and chunk file when a chunk is missing (Zarr
            would return its fill value) or cannot be decoded (truncated,
            altered: the zstd checksum does not match).
        """
        stop = self._n if stop is None else min(stop, self._n)
        out = {}
        for f in fields or self.fields:
            if f == "clean" and self._clean_source is not None:
                out[f] = self._read_referenced(self.read(start, stop, fields=("clean_rows",))["clean_rows"])
                continue
            if f == "objects" and self.has_objects:
                columns = self.read(start, stop, fields=[f"objects/{c}" for c in obj.COLUMNS])
                out[f] = obj.from_columns({name.split("/", 1)[1]: v for name, v in columns.items()})
                continue
            arr = self.array(f)
            if stop > start:
                rows = int(arr.chunks[0])
                self._require_chunks(f, start // rows, (stop - 1) // rows)
            try:
                out[f] = arr[start:stop]
            except MemoryError:
                raise
            except Exception as exc:  # zstd, codec and shape errors of a damaged chunk
                raise self._damaged(f, start, stop, exc) from None
        return out

    def _read_referenced(self, rows: np.ndarray) -> np.ndarray:
        """The referenced clean images of ``rows`` (rows of the source), read in contiguous runs."""
        source, member = self._clean_source, self.clean_ref["member"]
        if rows.size and (rows.min() < 0 or rows.max() >= len(source)):
            raise DatasetError(f"{self.path}: member 'clean_rows' refers to row {int(rows.max())} of "
                               f"{source.path}, which has {len(source)}")
        out = np.empty((len(rows), *self.clean_shape), dtype=np.float32)
        if not rows.size:
            return out
        # runs of consecutive rows (one for a whole degraded dataset), each one read
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
            out[lo:hi] = source.read(int(rows[lo]), int(rows[hi - 1]) + 1, fields=(member,))[member]
        return out

    def _chunk_key(self, name: str, i: int) -> str:
        arr = self._arrays[name]
        return f"{name}/" + arr.metadata.encode_chunk_key((i,) + (0,) * (arr.ndim - 1))

    def _require_chunks(self, name: str, first: int, last: int) -> None:
        """One stat per chunk: a missing chunk file is an error, not rows of fill value."""
        if not self.every_chunk_stored:
            return  # written before galaug stored every chunk: an all-zero chunk may be absent on purpose
        chunk = int(self._arrays[name].chunks[0])
        for i in range(first, last + 1):
            key = self._chunk_key(name, i)
            if not (self.path / key).is_file():
                rows = f"{i * chunk}-{min((i + 1) * chunk, self._n) - 1}"
                raise DatasetError(f"{self.path}: member {name!r} is damaged: chunk file {key} "
                                   f"(rows {rows}) is missing")

    def _damaged(self, name: str, start: int, stop: int, exc: Exception) -> DatasetError:
        """The error of a read that failed, naming the first chunk that cannot be decoded."""
        arr = self._arrays[name]
        chunk = int(arr.chunks[0])
        for i in range(start // chunk, (stop - 1) // chunk + 1):
            lo, hi = i * chunk, min((i + 1) * chunk, self._n)
            try:
                arr[lo:hi]
            except Exception as chunk_exc:
                return DatasetError(f"{self.path}: member {name!r} is damaged: chunk file {self._chunk_key(name, i)} "
                                    f"(rows {lo}-{hi - 1}) cannot be decoded ({describe(chunk_exc)})")
        return DatasetError(f"{self.path}: member {name!r} rows {start}-{stop - 1} cannot be read ({describe(exc)})")

    def verify_chunks(self) -> None:
        """Check that the chunk file of every chunk of every member exists (one stat each).

        Reads check the chunks they touch; this checks them all, without
        decoding any. Raises :class:`DatasetError` naming the first missing one.
        """
        if self._n:
            for name in self._arrays:
                self._require_chunks(name, 0, (self._n - 1) // int(self._arrays[name].chunks[0]))

    def iter_blocks(self, *, rows: int | None = None, fields: Sequence[str] | None = None, start: int = 0,
                    stop: int | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield ``(first row, arrays)`` over consecutive blocks of ``rows`` (a chunk by default) of rows
        ``start`` to ``stop`` (all by default)."""
        rows = rows or self.chunk_rows
        stop = self._n if stop is None else min(stop, self._n)
        for first in range(start, stop, rows):
            yield first, self.read(first, min(first + rows, stop), fields=fields)

    def origin_counts(self) -> dict[str, int]:
        """Number of samples by origin name."""
        counts = np.zeros(len(self.origin_names), dtype=np.int64)
        for _, block in self.iter_blocks(rows=max(self.chunk_rows, 65536), fields=("origin",)):
            counts += np.bincount(block["origin"], minlength=len(self.origin_names))[: len(counts)]
        return {name: int(c) for name, c in zip(self.origin_names, counts)}

    def object_counts(self) -> dict[str, int] | None:
        """How many images have an id, coordinates (RA/Dec), a WCS and a source file; None without objects."""
        if not self.has_objects:
            return None
        total = dict.fromkeys(("ids", "coordinates", "wcs", "sources"), 0)
        for _, block in self.iter_blocks(rows=max(self.chunk_rows, 65536), fields=("objects",)):
            for k, v in obj.counts(block["objects"]).items():
                total[k] += v
        return total

    def summary(self) -> dict[str, Any]:
        """What ``galaug info`` shows, as a JSON-serialisable dict; every chunk file is checked first."""
        self.verify_chunks()
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
            "clean_ref": self.clean_ref,
            "ivar": self.has_ivar,
            "mask": self.has_mask,
            "objects": self.object_counts(),
            "chunk_rows": self.chunk_rows,
            "provenance": self.provenance,
        }


def _declared(meta: dict[str, Any], member: str) -> bool:
    """Whether the attributes declare optional ``member`` (its names or width)."""
    if member in ("clean", "clean_rows"):
        return bool(meta.get("clean_shape")) and bool(meta.get("clean_ref")) == (member == "clean_rows")
    if member in ("ivar", "mask"):
        return meta.get(member) is True
    if member.startswith("objects/"):
        return bool(meta.get("objects"))
    key = {"params": "params", "latents": "latent_dim", "z": "z_dim"}[member]
    return bool(meta.get(key))


def _resolve_clean_ref(path: Path, meta: dict[str, Any]) -> tuple[Dataset, dict[str, Any]]:
    """The dataset holding the clean images of ``path`` and the resolved reference; checked, or a clear error.

    The reference's relative path (from ``path``'s folder) is tried first, then the absolute one.
    """
    ref = meta["clean_ref"]
    fix = "put it back, or degrade again with --copy-clean so that the dataset travels alone"
    candidates = [(path.parent / ref["path"]), Path(ref["absolute"])]
    target = next((p for p in candidates if (p / "zarr.json").is_file()), None)
    if target is None:
        raise _fail(path, f"its clean images are the images of {ref['absolute']} (stored by reference), "
                          f"which is missing; {fix}")
    try:
        source = open_dataset(target)
    except DatasetError as exc:
        raise _fail(path, f"its clean images are in {target} (stored by reference), which cannot be read: "
                          f"{exc}") from None
    if source.id != ref["id"]:
        raise _fail(path, f"its clean images are in {target} (stored by reference), which has changed since: "
                          f"dataset id {source.id}, expected {ref['id']}; {fix}")
    member = ref["member"]
    shape = source.clean_shape if member == "clean" else source.image_shape
    if member not in source.fields or tuple(shape) != tuple(meta["clean_shape"]):
        raise _fail(path, f"its clean images are {member!r} of {target}, which does not hold "
                          f"{' x '.join(map(str, meta['clean_shape']))} images")
    return source, {"path": str(target.resolve()), "id": source.id, "member": member}


def _fail(path: Path, why: str) -> DatasetError:
    return DatasetError(f"{path}: {why}")


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _check_attributes(path: Path, meta: dict[str, Any]) -> None:
    """Every ``galaug`` attribute has the type the format says; name the first that does not."""
    def bad(key: str, expected: str) -> DatasetError:
        return _fail(path, f"attribute {fmt.ATTR}.{key} is {short(meta[key])}, expected {expected}")

    if not (isinstance(meta["id"], str) and meta["id"]):
        raise bad("id", "a non-empty string")
    if not _is_int(meta["n"], 0):
        raise bad("n", "a count (an integer >= 0)")
    bands = meta["bands"]
    if not (_is_names(bands) and bands and len(set(bands)) == len(bands)):
        raise bad("bands", "a list of distinct band names")
    if "origin_names" in meta and not (_is_names(meta["origin_names"]) and meta["origin_names"]):
        raise bad("origin_names", "a list of names")
    if meta.get("pixel_scale") is not None:
        try:
            fmt.pixel_scale_attr(meta["pixel_scale"])
        except (ValueError, TypeError, KeyError, AttributeError):
            raise bad("pixel_scale", '{"value": 0.2, "unit": "arcsec"} or null') from None
    if meta.get("flux_unit") is not None:
        try:
            fmt.flux_unit_attr(meta["flux_unit"])
        except (ValueError, TypeError):
            raise bad("flux_unit", "a unit astropy understands, or null") from None
    params = meta.get("params")
    if params is not None and not (isinstance(params, dict) and _is_names(params.get("names"))
                                   and isinstance(params.get("units"), list)
                                   and all(isinstance(u, str) for u in params["units"])
                                   and len(params["units"]) == len(params["names"])):
        raise bad("params", '{"names": [...], "units": [...]} of equal length, or null')
    for key in ("latent_dim", "z_dim"):
        if meta.get(key) is not None and not _is_int(meta[key], 0):
            raise bad(key, "a width (an integer) or null")
    clean = meta.get("clean_shape")
    if clean is not None and not (isinstance(clean, list) and len(clean) == 3 and all(_is_int(v, 1) for v in clean)):
        raise bad("clean_shape", "[C, H, W] or null")
    ref = meta.get("clean_ref")
    if ref is not None and not (isinstance(ref, dict) and all(isinstance(ref.get(k), str) and ref.get(k)
                                                            for k in ("path", "absolute", "id", "member"))
                                and ref["member"] in fmt.IMAGE_MEMBERS and meta.get("clean_shape")):
        raise bad("clean_ref", '{"path", "absolute", "id", "member"} with clean_shape set, or null')
    for key in ("ivar", "mask"):
        if meta.get(key) not in (None, True, False):
            raise bad(key, "true, or absent")
    objects = meta.get("objects")
    if objects is not None and not (isinstance(objects, dict) and _is_names(objects.get("hdus"))
                                    and isinstance(objects.get("frames"), list)
                                    and all(isinstance(f, dict) and all(k in f for k in obj.FRAME_KEYS)
                                            for f in objects["frames"])):
        raise bad("objects", '{"hdus": [...], "frames": [{CTYPE1, ...}]}, or absent')
    if "provenance" in meta and not (isinstance(meta["provenance"], list)
                                     and all(isinstance(e, dict) for e in meta["provenance"])):
        raise bad("provenance", "a list of steps")


def _check_consolidated(path: Path, meta_json: dict[str, Any]) -> None:
    """Each member's ``zarr.json`` is readable and says what the consolidated copy in the root says.

    Damage to either copy (a wrong shape, dtype, codec or byte order) would
    otherwise make one of them read wrong data without any error.
    """
    consolidated = meta_json.get("consolidated_metadata")
    if consolidated is None:
        return
    members = consolidated.get("metadata") if isinstance(consolidated, dict) else None
    if not isinstance(members, dict):
        raise _fail(path, "zarr.json has unreadable consolidated metadata")
    for name, expected in members.items():
        file = path / name / "zarr.json"
        try:
            actual = json.loads(file.read_bytes())
        except FileNotFoundError:
            raise _fail(path, f"member {name!r} is damaged: {name}/zarr.json is missing") from None
        except (OSError, ValueError) as exc:
            raise _fail(path, f"member {name!r} is damaged: {name}/zarr.json is unreadable ({describe(exc)})") from None
        if isinstance(expected, dict) and expected.get("node_type") == "group":
            # a subgroup (objects/): the root's copy nests its members' metadata, its own zarr.json does not
            expected = {k: v for k, v in expected.items() if k != "consolidated_metadata"}
        if actual != expected:
            keys = sorted(k for k in set(actual) | set(expected) if actual.get(k) != expected.get(k)) \
                if isinstance(actual, dict) and isinstance(expected, dict) else []
            raise _fail(path, f"member {name!r} is damaged: {name}/zarr.json and the consolidated metadata "
                              f"in zarr.json disagree" + (f" on {', '.join(keys)}" if keys else ""))


def _member(path: Path, group: zarr.Group, name: str) -> zarr.Array | None:
    """The array ``name`` of ``group``, None if absent; unreadable metadata is an error naming it."""
    try:
        arr = group[name]
    except KeyError:
        return None
    except Exception as exc:  # zarr raises several types for broken metadata
        raise _fail(path, f"member {name!r} is damaged: {name}/zarr.json is unreadable ({describe(exc)})") from None
    if not isinstance(arr, zarr.Array):
        raise _fail(path, f"member {name!r} is a group, expected an array")
    return arr


def _check_member(path: Path, group: zarr.Group, name: str, shape: tuple, dtype: str, chunk_rows: int) -> None:
    arr = _member(path, group, name)
    if arr is None:
        raise _fail(path, f"missing member {name!r}")
    if str(arr.dtype) != dtype:
        raise _fail(path, f"member {name!r} has dtype {arr.dtype}, expected {dtype}")
    if tuple(arr.shape) != shape:
        expected = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise _fail(path, f"member {name!r} has shape {tuple(arr.shape)}, expected {expected}")
    try:
        chunks = tuple(arr.chunks)
    except Exception as exc:  # not a regular chunk grid
        raise _fail(path, f"member {name!r} has an unsupported chunk grid ({describe(exc)})") from None
    small = name not in fmt.IMAGE_MEMBERS
    if chunks[1:] != shape[1:] or not chunks[0] or chunks[0] % chunk_rows or (chunks[0] != chunk_rows and not small):
        expected = f"a multiple of {chunk_rows}" if small else str(chunk_rows)
        raise _fail(path, f"member {name!r} has chunks {chunks}, expected {expected} rows of whole samples "
                          f"(the chunk rows of 'images')")


def open_dataset(path: str | Path) -> Dataset:
    """Open a galaug dataset, checking its schema.

    Raises
    ------
    DatasetError
        Saying exactly what is wrong: no such path, not a Zarr store, not a
        galaug dataset, an attribute of the wrong type, a missing member, a
        wrong shape, dtype or chunking, or member metadata that is
        unreadable or disagrees with the consolidated copy.
    """
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such file or directory")
    if not path.is_dir() or not (path / "zarr.json").is_file():
        raise _fail(path, "not a galaug dataset (expected a Zarr v3 group directory with zarr.json)")
    try:
        meta_json = json.loads((path / "zarr.json").read_bytes())
    except (OSError, ValueError) as exc:
        raise _fail(path, f"unreadable zarr.json ({describe(exc)})") from None
    if not isinstance(meta_json, dict) or meta_json.get("zarr_format") != 3 or meta_json.get("node_type") != "group":
        raise _fail(path, "not a galaug dataset (zarr.json does not describe a Zarr v3 group)")
    attributes = meta_json.get("attributes", {})
    meta = attributes.get(fmt.ATTR) if isinstance(attributes, dict) else None
    if not isinstance(meta, dict):
        raise _fail(path, f"not a galaug dataset (no {fmt.ATTR!r} attributes; written by another tool?)")
    version = meta.get("format_version")
    if version not in fmt.SUPPORTED_VERSIONS:
        raise _fail(path, f"format version {version!r} is not supported (this galaug reads "
                          f"{', '.join(map(str, fmt.SUPPORTED_VERSIONS))})")
    for key in ("id", "bands", "n"):
        if key not in meta:
            raise _fail(path, f"attribute {fmt.ATTR}.{key} is missing")
    _check_attributes(path, meta)
    _check_consolidated(path, meta_json)
    try:
        # each member's own zarr.json, checked above against the consolidated copy
        group = zarr.open_group(store=str(path), mode="r", use_consolidated=False)
    except Exception as exc:  # zarr raises several types for broken metadata
        raise _fail(path, f"cannot open as a Zarr group ({describe(exc)})") from None
    n = int(meta["n"])
    images = _member(path, group, "images")
    if images is None:
        raise _fail(path, "missing member 'images'")
    if images.ndim != 4:
        raise _fail(path, f"member 'images' must be a 4-d array (N, C, H, W), got shape {images.shape}")
    c, h, w = images.shape[1:]
    if len(meta["bands"]) != c:
        raise _fail(path, f"attribute bands lists {len(meta['bands'])} bands but images have {c} channels")
    try:
        chunk_rows = int(images.chunks[0])
    except Exception as exc:
        raise _fail(path, f"member 'images' has an unsupported chunk grid ({describe(exc)})") from None

    def check(name: str, shape: tuple) -> None:
        _check_member(path, group, name, shape, fmt.DTYPES[name], chunk_rows)

    def present(name: str) -> bool:
        return _member(path, group, name) is not None

    check("images", (n, c, h, w))
    check("origin", (n,))
    check("index", (n,))
    params = meta.get("params")
    if params:
        check("params", (n, len(params["names"])))
    elif present("params"):
        raise _fail(path, "member 'params' exists but attribute params (names, units) is missing")
    latent_dim = meta.get("latent_dim")
    if latent_dim:
        check("latents", (n, int(latent_dim)))
    elif present("latents"):
        raise _fail(path, "member 'latents' exists but attribute latent_dim is missing")
    z_dim = meta.get("z_dim")
    if z_dim:
        check("z", (n, int(z_dim)))
    elif present("z"):
        raise _fail(path, "member 'z' exists but attribute z_dim is missing")
    clean_shape = meta.get("clean_shape")
    if clean_shape:
        if clean_shape[0] != c:
            raise _fail(path, f"attribute clean_shape {clean_shape} must be [C, H, W] with C = {c}")
        if meta.get("clean_ref"):
            check("clean_rows", (n,))
        else:
            check("clean", (n, *clean_shape))
    elif present("clean"):
        raise _fail(path, "member 'clean' exists but attribute clean_shape is missing")
    for name in ("ivar", "mask"):
        if meta.get(name):
            check(name, (n, c, h, w))
        elif present(name):
            raise _fail(path, f"member {name!r} exists but attribute {name} is missing")
    if meta.get("objects"):
        for column, (_, tail) in obj.COLUMNS.items():
            check(f"objects/{column}", (n, *tail))
        sources = _member(path, group, "objects/sources")
        if sources is None:
            raise _fail(path, "missing member 'objects/sources'")
        if str(sources.dtype) != "uint8" or sources.ndim != 2:
            raise _fail(path, f"member 'objects/sources' has dtype {sources.dtype} and shape {sources.shape}, "
                              "expected uint8 (S, W)")
    elif present("objects/id"):
        raise _fail(path, "member 'objects/id' exists but attribute objects is missing")
    return Dataset(path, group, meta)
