"""Writing galaug datasets: batches appended in whole chunks, renamed into place when complete."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from galaug import faults
from galaug.data import _format as fmt
from galaug.data import objects as obj
from galaug.data.dataset import Dataset, open_dataset
from galaug.errors import DatasetError
from galaug.files import dead_writer

_UNSET: Any = object()

__all__ = ["DatasetWriter", "ShardWriter", "create_dataset", "check_output", "temporary_sibling", "commit_path"]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _clean_stale(final: Path) -> None:
    """Tidy what killed writers of ``final`` left: their temporaries are removed, and a previous
    output they had moved aside is put back if ``final`` is missing (else removed)."""
    with contextlib.suppress(OSError):
        for p in sorted(final.parent.iterdir()):
            for kind in ("tmp", "old"):
                prefix = f".{final.name}.{kind}-"
                if p.name.startswith(prefix) and dead_writer(p.name[len(prefix):]):
                    if kind == "old" and not (final.exists() or final.is_symlink()):
                        os.rename(p, final)
                    else:
                        _remove(p)


def temporary_sibling(final: Path) -> Path:
    """A fresh hidden name beside ``final`` for writing; stale ones are cleaned first."""
    _clean_stale(final)
    return final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def check_output(path: str | Path, *, overwrite: bool, what: str = "dataset") -> Path:
    """Refuse an output that exists (unless ``overwrite``) or whose folder is missing."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise DatasetError(f"{path}: not a valid output name")
    if not path.parent.is_dir():
        raise DatasetError(f"{path}: parent folder {str(path.parent)!r} does not exist")
    _clean_stale(path)  # a writer killed while replacing ``path`` may have left the old one aside
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise DatasetError(f"{path}: output exists (use --overwrite to replace it)")
        if what == "dataset" and path.is_dir() and any(path.iterdir()):
            try:
                open_dataset(path)
            except DatasetError:
                raise DatasetError(
                    f"{path}: exists and is not a galaug dataset; refusing to overwrite it"
                ) from None
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is not supported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if sys.platform == "linux" else None
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # this kernel or file system cannot
        return False
    raise OSError(err, os.strerror(err), str(b))


def commit_path(tmp: Path, final: Path, *, overwrite: bool) -> None:
    """Rename ``tmp`` to ``final``; with ``overwrite`` the old one is removed only afterwards.

    Replacing swaps the two atomically where the system can (Linux), so
    ``final`` is at every moment the complete old or the complete new output.
    Elsewhere the old one is moved aside first; if the process dies before
    the new one is in place, the next writer of ``final`` puts it back.
    """
    old = None
    try:
        if final.exists() or final.is_symlink():
            if not overwrite:
                raise DatasetError(f"{final}: output appeared while writing (another process?); left untouched")
            faults.point("dataset.rename")
            if _exchange(tmp, final):
                old = tmp  # now holds the previous output
            else:
                old = final.parent / f".{final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                os.rename(final, old)
                faults.point("dataset.aside")
                try:
                    os.rename(tmp, final)
                except OSError:
                    os.rename(old, final)
                    raise
        else:
            faults.point("dataset.rename")
            os.rename(tmp, final)
    except OSError as exc:
        raise DatasetError(f"{final}: could not move the finished output into place ({exc})") from None
    faults.point("dataset.renamed")
    if old is not None:
        _remove(old)


class _Member:
    """One array being written: rows are staged until a whole chunk is complete, then written in place."""

    def __init__(self, array: zarr.Array) -> None:
        self.array = array
        self.rows = int(array.chunks[0])
        self.stage: np.ndarray | None = None  # one chunk, allocated on first use
        self.fill = 0  # rows staged
        self.written = 0  # rows written to the array, after the writer's first row

    def append(self, values: np.ndarray, first: int, grow: Any) -> None:
        """Write ``values`` after the rows already given; ``first`` is the writer's first row (a shard's ``lo``)."""
        pos, b = 0, len(values)
        while pos < b:
            if not self.fill and b - pos >= self.rows:  # whole chunks straight from the batch, no copy
                take = (b - pos) // self.rows * self.rows
                self._write(values[pos:pos + take], first, grow)
            else:
                if self.stage is None:
                    self.stage = np.empty((self.rows, *self.array.shape[1:]), dtype=self.array.dtype)
                take = min(self.rows - self.fill, b - pos)
                self.stage[self.fill:self.fill + take] = values[pos:pos + take]
                self.fill += take
                if self.fill == self.rows:
                    self._write(self.stage, first, grow)
                    self.fill = 0
            pos += take

    def finish(self, first: int, grow: Any) -> None:
        """Write the staged rows (the last, partial chunk)."""
        if self.fill:
            self._write(self.stage[: self.fill], first, grow)
            self.fill = 0

    def _write(self, values: np.ndarray, first: int, grow: Any) -> None:
        lo = first + self.written
        hi = lo + len(values)
        grow(self, hi)
        self.array[lo:hi] = values
        self.written += len(values)


class DatasetWriter:
    """Append batches to a new dataset; it appears under its name only when complete.

    Rows are written in whole chunks along the sample axis, straight from the
    batches given (only the rows of an incomplete chunk are staged). The
    data go to a hidden temporary beside the final path, which
    :meth:`close` renames into place after writing the attributes (in one
    update), consolidating the metadata and flushing every file to disk
    (fsync), so that the dataset under its name is complete even after a
    power cut. If the process dies first, the final path never exists; an
    exception inside the ``with`` block removes the temporary.

    Parameters
    ----------
    path : str or Path
        Final path, e.g. ``"real.zarr"``.
    bands : sequence of str
        Band names, one per channel.
    image_size : int or (int, int)
        Height and width in pixels.
    provenance : dict
        The entry of this step (:func:`galaug.data.provenance.make_entry`).
    parents : sequence of Dataset
        Datasets read; their provenance chains are carried over.
    pixel_scale : astropy Quantity, optional
        Angle or length per pixel (``0.2 * u.arcsec``); unknown if omitted.
    flux_unit : str, optional
        Unit of the pixel values (``"nJy"``, ``"adu"``); unknown if omitted.
    param_names, param_units : sequence of str, optional
        Names and units of the columns of ``params``.
    latent_dim : int, optional
        Width of ``latents`` (generated data).
    z_dim : int, optional
        Width of ``z``, the prior sample of each generated image.
    clean_size : int or (int, int), optional
        Height and width of ``clean``, the undegraded images paired with
        ``images`` (written by ``galaug degrade``).
    clean_ref : dict, optional
        Instead of storing ``clean``, refer to the images of another dataset:
        ``{"path", "id", "member"}`` (see :attr:`Dataset.clean_ref`); rows
        are then given as ``clean_rows`` (the row of each sample's clean
        image there). Needs ``clean_size``.
    ivar, mask : bool
        Whether rows carry an inverse variance (float32) and a mask of bit
        flags (uint16, nonzero = bad), both shaped like the images.
    objects : ObjectTables, optional
        Rows carry an ``objects`` table (:mod:`galaug.data.objects`): who
        each image is. The tables its rows index (source files, HDUs, WCS
        frames) are written on :meth:`close`, so they may grow while rows
        are appended.
    n : int, optional
        Number of rows, when known: every array is sized once, up front,
        and :meth:`close` checks that exactly ``n`` rows came.
    codec : str, optional
        Chunk codec, one of :data:`galaug.data.CODECS` (see
        docs/dataset-format.md); :func:`galaug.data.set_default_codec`'s by default.
    overwrite : bool
        Replace an existing dataset of the same name once this one is complete.
    chunk_bytes : int
        Target size of one chunk of images.
    """

    def __init__(self, path: str | Path, *, bands: Sequence[str], image_size: int | Sequence[int],
                 provenance: dict[str, Any], parents: Sequence[Dataset] = (),
                 pixel_scale: Any = None, flux_unit: str | None = None,
                 param_names: Sequence[str] | None = None, param_units: Sequence[str] | None = None,
                 latent_dim: int | None = None, z_dim: int | None = None, clean_size: int | Sequence[int] | None = None,
                 clean_ref: dict[str, Any] | None = None, ivar: bool = False, mask: bool = False,
                 objects: obj.ObjectTables | None = None,
                 origin_names: Sequence[str] = fmt.ORIGIN_NAMES, n: int | None = None, codec: str | None = None,
                 overwrite: bool = False, chunk_bytes: int = fmt.DEFAULT_CHUNK_BYTES,
                 _small_chunks: bool = True) -> None:
        self.path = check_output(path, overwrite=overwrite)
        self.overwrite = overwrite
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.bands = tuple(str(b) for b in bands)
        if not self.bands or len(set(self.bands)) != len(self.bands):
            raise ValueError(f"bands must be distinct and non-empty, got {list(bands)}")
        self.image_shape = (len(self.bands), int(h), int(w))
        if param_names is not None:
            param_units = list(param_units) if param_units is not None else [""] * len(param_names)
            if len(param_units) != len(param_names):
                raise ValueError("param_units must have one unit per parameter name")
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0):
            raise ValueError(f"n must be a count of rows, got {n!r}")
        if clean_ref is not None and clean_size is None:
            raise ValueError("clean_ref needs clean_size (the shape of the referenced images)")
        self.codec = fmt.check_codec(codec)
        self.id = uuid.uuid4().hex
        chain: list[dict[str, Any]] = []
        seen: set[str] = set()
        for parent in parents:
            for entry in parent.provenance:
                key = entry.get("output") or repr(entry)
                if key not in seen:
                    seen.add(key)
                    chain.append(entry)
        entry = dict(provenance)
        if not entry.get("parents"):
            entry["parents"] = [p.id for p in parents]
        entry["output"] = self.id
        chain.append(entry)
        self._meta: dict[str, Any] = {
            "format_version": fmt.FORMAT_VERSION,
            "id": self.id,
            "bands": list(self.bands),
            "pixel_scale": fmt.pixel_scale_attr(pixel_scale),
            "flux_unit": fmt.flux_unit_attr(flux_unit),
            "origin_names": list(origin_names),
            "params": None if param_names is None else {"names": list(param_names), "units": list(param_units)},
            "latent_dim": None if latent_dim is None else int(latent_dim),
            "z_dim": None if z_dim is None else int(z_dim),
            "clean_shape": None,
            "provenance": chain,
            fmt.EVERY_CHUNK_STORED: True,
        }
        if clean_size is not None:
            ch, cw = (clean_size, clean_size) if isinstance(clean_size, int) else tuple(clean_size)
            self._meta["clean_shape"] = [len(self.bands), int(ch), int(cw)]
        if clean_ref is not None:
            self._meta["clean_ref"] = fmt.clean_ref_attr(clean_ref, self.path)
        if ivar:
            self._meta["ivar"] = True
        if mask:
            self._meta["mask"] = True
        #: The tables the ``objects`` rows index, written on close (None: no objects table).
        self.objects = objects
        self.chunk_rows = fmt.chunk_rows(4 * int(np.prod(self.image_shape)), chunk_bytes)
        self.expected = None if n is None else int(n)
        self.first = 0  # row of the first one this writer appends (a shard's lo)
        #: True when ShardWriter objects write the rows (see galaug.distributed.sharded_writer); close() commits n
        self.sharded = False
        self.n = 0  # rows appended
        self._closed = False
        self.tmp = temporary_sibling(self.path)
        with self._disk_errors():
            self._group = zarr.open_group(store=str(self.tmp), mode="w-", zarr_format=3)
        faults.point("dataset.start")
        tail = {"images": self.image_shape, "origin": (), "index": ()}
        if param_names is not None:
            tail["params"] = (len(param_names),)
        if latent_dim is not None:
            tail["latents"] = (int(latent_dim),)
        if z_dim is not None:
            tail["z"] = (int(z_dim),)
        if self._meta["clean_shape"] is not None:
            if clean_ref is None:
                tail["clean"] = tuple(self._meta["clean_shape"])
            else:
                tail["clean_rows"] = ()
        if ivar:
            tail["ivar"] = self.image_shape
        if mask:
            tail["mask"] = self.image_shape
        if objects is not None:
            tail.update({f"objects/{c}": shape for c, (_, shape) in obj.COLUMNS.items()})
            self._group.create_group("objects")
        length = self.expected or 0
        self._members: dict[str, _Member] = {}
        with self._disk_errors():
            for name, rest in tail.items():
                rows = self.chunk_rows
                if _small_chunks and name not in fmt.IMAGE_MEMBERS:
                    rows = fmt.small_chunk_rows(name, rest, self.chunk_rows, self.expected)
                # every chunk stored (zarr skips all-fill-value ones by default), so that readers can tell a
                # missing chunk file from zeros; the codec's checksum makes a damaged chunk an error, not data
                array = self._group.create_array(
                    name, shape=(length, *rest), chunks=(rows, *rest), dtype=fmt.DTYPES[name],
                    config={"write_empty_chunks": True}, **fmt.codec_arrays(self.codec),
                )
                self._members[name] = _Member(array)

    # -- writing ---------------------------------------------------------------
    @property
    def fields(self) -> tuple[str, ...]:
        """The per-row fields :meth:`append` takes (``objects`` for the columns of the objects table)."""
        return tuple(dict.fromkeys("objects" if m.startswith("objects/") else m for m in self._members))

    def append(self, images: np.ndarray, *, origin: int | np.ndarray = 0, index: np.ndarray | None = None,
               params: np.ndarray | None = None, latents: np.ndarray | None = None,
               z: np.ndarray | None = None, clean: np.ndarray | None = None,
               clean_rows: np.ndarray | None = None, ivar: np.ndarray | None = None,
               mask: np.ndarray | None = None, objects: np.ndarray | None = None) -> None:
        """Append a batch of ``images`` of shape (B, C, H, W) with their per-sample fields.

        ``objects`` is a structured array of :data:`galaug.data.objects.ROW`.
        """
        if self._closed:
            raise RuntimeError("writer is closed")
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1:] != self.image_shape:
            raise ValueError(f"images must have shape (B, {', '.join(map(str, self.image_shape))}), got {images.shape}")
        b = images.shape[0]
        if self.expected is not None and self.n + b > self.expected:
            raise ValueError(f"{self.n + b} rows appended to a dataset of {self.expected}")
        origin_arr = np.broadcast_to(np.asarray(origin, dtype=np.uint8), (b,))
        if origin_arr.size and origin_arr.max() >= len(self._meta["origin_names"]):
            raise ValueError(f"origin values must be < {len(self._meta['origin_names'])}")
        if index is None:
            index = np.arange(self.first + self.n, self.first + self.n + b)
        batch = {"images": images, "origin": origin_arr, "index": np.asarray(index, dtype=np.int64)}
        fields = self.fields
        for name, value in (("params", params), ("latents", latents), ("z", z), ("clean", clean),
                            ("clean_rows", clean_rows), ("ivar", ivar), ("mask", mask), ("objects", objects)):
            if (value is None) != (name not in fields):
                if name in ("clean", "clean_rows") and "clean" not in fields and "clean_rows" in fields:
                    raise ValueError("this dataset refers to its clean images: give clean_rows, not clean")
                raise ValueError(f"this dataset {'needs' if name in fields else 'has no'} {name}")
            if value is None:
                continue
            if name == "objects":
                value = np.asarray(value)
                if value.dtype != obj.ROW or value.shape != (b,):
                    raise ValueError(f"objects must be ({b},) rows of galaug.data.objects.ROW, "
                                     f"got {value.dtype} of shape {value.shape}")
                self._check_objects(value)
                batch.update({f"objects/{c}": v for c, v in obj.to_columns(value).items()})
            else:
                batch[name] = np.asarray(value, dtype=fmt.DTYPES[name])
        for name, arr in batch.items():
            expected = (b, *self._members[name].array.shape[1:])
            if arr.shape != expected:
                raise ValueError(f"{name} must have shape {expected}, got {arr.shape}")
        with self._disk_errors():
            for name, member in self._members.items():
                chunks_before = member.written
                member.append(batch[name], self.first, self._grow)
                if name == "images" and member.written > chunks_before:
                    faults.point("dataset.chunk")
        self.n += b

    def _check_objects(self, rows: np.ndarray) -> None:
        """Every source, HDU and frame index of ``rows`` names a row of the tables (or is -1)."""
        tables = self.objects
        if tables is None:  # a shard: the creator's tables are not known here
            return
        for column, values in (("source", tables.sources), ("hdu", tables.hdus), ("frame", tables.frames)):
            col = rows[column]
            if col.size and (col.min() < -1 or col.max() >= len(values)):
                raise ValueError(f"objects {column} index {int(col.max())} is not in the table of "
                                 f"{len(values)} {column}s")

    def _write_object_tables(self) -> None:
        """The table of source names as the array ``objects/sources``; the HDUs and frames into the attributes."""
        names = obj.encode_names(self.objects.sources)
        rows = max(1, min(len(names), fmt.SMALL_CHUNK_BYTES // names.shape[1]))
        array = self._group.create_array("objects/sources", shape=names.shape, chunks=(rows, names.shape[1]),
                                         dtype="uint8", config={"write_empty_chunks": True},
                                         **fmt.codec_arrays(self.codec))
        array[...] = names
        self._meta["objects"] = self.objects.attrs()

    def _grow(self, member: _Member, stop: int) -> None:
        """Make room for rows up to ``stop``: arrays of unknown length grow by doubling (one resize each time)."""
        arr = member.array
        if arr.shape[0] < stop:
            new = max(stop, 2 * arr.shape[0], 4 * member.rows)
            arr.resize((new, *arr.shape[1:]))

    def _finish(self) -> None:
        """Write the staged rows and give every array its exact length."""
        for member in self._members.values():
            member.finish(self.first, self._grow)
        stop = self.first + self.n
        for member in self._members.values():
            if member.array.shape[0] != stop and self.expected is None:
                member.array.resize((stop, *member.array.shape[1:]))

    @property
    def origin_names(self) -> list[str]:
        """Names of the ``origin`` codes."""
        return list(self._meta["origin_names"])

    @property
    def closed(self) -> bool:
        """True once the writer has committed or aborted."""
        return self._closed

    def set_metadata(self, *, bands: Sequence[str] | None = None, pixel_scale: Any = _UNSET,
                     flux_unit: Any = _UNSET, provenance: dict[str, Any] | None = None) -> None:
        """Settle metadata that is known only once all data are read (before :meth:`close`).

        ``bands`` renames the bands (same count); ``pixel_scale`` and
        ``flux_unit`` replace the values given at creation (``None``: unknown);
        ``provenance`` items are added to this step's provenance entry.
        """
        if self._closed:
            raise RuntimeError("writer is closed")
        if bands is not None:
            bands = tuple(str(b) for b in bands)
            if len(bands) != len(self.bands) or len(set(bands)) != len(bands):
                raise ValueError(f"bands must be {len(self.bands)} distinct names, got {list(bands)}")
            self.bands = bands
            self._meta["bands"] = list(bands)
        if pixel_scale is not _UNSET:
            self._meta["pixel_scale"] = fmt.pixel_scale_attr(pixel_scale)
        if flux_unit is not _UNSET:
            self._meta["flux_unit"] = fmt.flux_unit_attr(flux_unit)
        if provenance:
            self._meta["provenance"][-1].update(provenance)

    def close(self) -> Dataset:
        """Write the remaining rows and attributes, flush them to disk, rename into place, return the dataset."""
        if self._closed:
            raise RuntimeError("writer is closed")
        try:
            if self.sharded:
                self.n = self.expected
            elif self.expected is not None and self.n != self.expected:
                raise ValueError(f"{self.path}: {self.n} rows were written to a dataset of {self.expected}")
            with self._disk_errors():
                if not self.sharded:
                    self._finish()
                self._meta["n"] = self.first + self.n
                if self.objects is not None:
                    self._write_object_tables()
                self._group.update_attributes({fmt.ATTR: self._meta})
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
                    zarr.consolidate_metadata(str(self.tmp))
                sync_tree(self.tmp)
                commit_path(self.tmp, self.path, overwrite=self.overwrite)
                sync_dir(self.path.parent)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return open_dataset(self.path)

    @contextlib.contextmanager
    def _disk_errors(self) -> Iterator[None]:
        """A full or read-only disk (any ``OSError``) aborts the write and is one ``DatasetError``."""
        try:
            yield
        except OSError as exc:
            self.abort()
            raise DatasetError(f"{self.path}: cannot write the dataset ({exc.strerror or exc}); "
                               "nothing was written") from None

    def abort(self) -> None:
        """Discard everything written; the final path is left as it was."""
        self._closed = True
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            self.abort()


class ShardWriter(DatasetWriter):
    """Rows ``lo`` to ``hi`` of a presized dataset temporary that another process created and will commit.

    Appends as :class:`DatasetWriter` does (same checks, whole chunks), in
    place: ``lo`` must be a chunk boundary of every member and ``hi`` one or
    the end. :meth:`close` writes the last rows and checks that exactly
    ``hi - lo`` came; it neither writes attributes nor renames (the creator
    does, see :func:`galaug.distributed.sharded_writer`).
    """

    def __init__(self, path: Path, tmp: Path, lo: int, hi: int, *, n_origins: int) -> None:
        self.path, self.tmp = Path(path), Path(tmp)
        try:
            group = zarr.open_group(store=str(self.tmp), mode="r+", zarr_format=3)
            # every chunk stored, as the creator's arrays do (a runtime setting, not in the metadata)
            arrays = {name: arr.with_config({"write_empty_chunks": True}) for name, arr in group.arrays()}
            if "objects" in group:  # the columns of the objects table (its tables are the creator's to write)
                arrays.update({f"objects/{name}": arr.with_config({"write_empty_chunks": True})
                               for name, arr in group["objects"].arrays()})
        except (OSError, ValueError, KeyError) as exc:
            raise DatasetError(f"{path}: cannot open the temporary {tmp} to write rows {lo}-{hi} ({exc})") from None
        self._members = {name: _Member(arr) for name, arr in arrays.items()}
        self.image_shape = tuple(arrays["images"].shape[1:])
        self.chunk_rows = arrays["images"].chunks[0]
        if any(lo % m.rows for m in self._members.values()):
            raise ValueError(f"a shard must start at a chunk boundary, got row {lo}")
        self._meta = {"origin_names": [str(i) for i in range(n_origins)]}
        self.objects = None  # the creator checks and writes the tables
        self.lo, self.hi = lo, hi
        self.first, self.n, self.expected = lo, 0, hi - lo
        self._closed = False
        #: provenance items for the creator to add when it commits (see :meth:`set_metadata`)
        self.provenance: dict[str, Any] = {}

    def set_metadata(self, *, provenance: dict[str, Any] | None = None, **other: Any) -> None:  # type: ignore[override]
        """Provenance items for this step's entry, added by the creator when it commits (rank 0's are used).

        Only ``provenance`` can be settled from a shard.
        """
        if other:
            raise ValueError(f"a shard can set only provenance, not {', '.join(other)}")
        self.provenance.update(provenance or {})

    def close(self) -> None:  # type: ignore[override]
        """Write the remaining rows; the shard must be complete."""
        if self._closed:
            raise RuntimeError("writer is closed")
        for member in self._members.values():
            member.finish(self.first, self._grow)
        self._closed = True
        if self.n != self.expected:
            raise RuntimeError(f"shard {self.lo}-{self.hi} got rows up to {self.lo + self.n}")

    def abort(self) -> None:
        """Stop writing; the creator removes the temporary."""
        self._closed = True


def sync_tree(root: Path) -> None:
    """Flush every file under ``root``, then every folder, to disk (fsync), so that a power cut keeps them.

    Called before a finished output is renamed into place: the rename is
    then never on disk before the data it names.
    """
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        sync_dir(Path(folder))


def sync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the data files were flushed
        pass
    finally:
        os.close(fd)


def create_dataset(path: str | Path, **kwargs: Any) -> DatasetWriter:
    """Start writing a dataset; see :class:`DatasetWriter` for the arguments.

    Examples
    --------
    >>> with create_dataset("cutouts.zarr", bands=["g", "r"], image_size=64,
    ...                     pixel_scale=0.2 * u.arcsec, provenance=make_entry("ingest")) as w:
    ...     for batch in batches:
    ...         w.append(batch)
    """
    return DatasetWriter(path, **kwargs)


def like(dataset: Dataset) -> dict[str, Any]:
    """Writer keyword arguments that copy ``dataset``'s bands, size, units and parameter names."""
    return {
        "bands": dataset.bands,
        "image_size": dataset.image_shape[1:],
        "pixel_scale": dataset.meta.get("pixel_scale"),
        "flux_unit": dataset.flux_unit,
        "param_names": dataset.param_names or None,
        "param_units": dataset.param_units or None,
        "latent_dim": dataset.latent_dim,
        "z_dim": dataset.z_dim,
        "clean_size": dataset.clean_shape[1:] if dataset.clean_shape else None,
        "clean_ref": dataset.clean_ref,
        "origin_names": dataset.origin_names,
        "ivar": dataset.has_ivar,
        "mask": dataset.has_mask,
        "objects": dataset.object_tables,
    }


def write_rows(writer: DatasetWriter, dataset: Dataset, rows: Iterable[int] | np.ndarray) -> None:
    """Copy the given rows of ``dataset`` (sorted ascending) into ``writer``, block by block.

    ``index`` of the copies is their row in ``dataset``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    fields = [f for f in dataset.stored_fields if f in writer.fields]
    for start, block in dataset.iter_blocks(fields=fields):
        stop = start + len(block["images"])
        lo, hi = np.searchsorted(rows, [start, stop])
        if hi > lo:
            sel = rows[lo:hi] - start
            writer.append(block["images"][sel], origin=block["origin"][sel], index=rows[lo:hi],
                          **{k: block[k][sel] for k in fmt.PER_ROW if k in block})
