"""Mixing real and generated images into one dataset (``galaug mix``).

Two ways to say how much of each (the grammar of the values is
:mod:`galaug.ratios`'s):

- counts: ``real`` is a fraction (0.1), a percentage (10%) or a count of the
  real set; ``gen`` is a multiple of the *full* real set (``5x``, the study's
  "100% gen"), a fraction or percentage of the generated set, or a count;
- ``alpha`` with ``size``: each of ``size`` samples comes from the generated
  set with probability ``alpha`` (the paper's mixing loader). This is what
  alpha means everywhere in galaug: the probability that a sample of the mix
  is generated.

Errors in these values are :class:`galaug.errors.ParamError` naming the
parameter (``gen``); ``galaug mix`` names the option (``--gen``).

Samples are chosen without replacement (unless ``replace``), with the seed.
The output is written in one streaming pass: each source is read in
ascending row order, block by block, real and generated rows are
interleaved in a random order, and rows are permuted within windows of
about ``window_bytes`` (64 MiB: a shuffle buffer, as in tf.data), so memory does not
grow with N. ``origin`` and ``index`` say where every sample came from.
``params`` are not carried (generated images have none); ``latents`` and
``z`` are, when every sample is generated; ``ivar`` and ``mask`` when every
sample comes from a set that has them. The ``objects`` table is carried
when either set has one: real rows keep their identity (source file, id,
RA/Dec, WCS), generated rows have none.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from galaug import quality
from galaug.progress import progress
from galaug.data import Dataset, create_dataset, make_entry, open_dataset
from galaug.data import objects as obj
from galaug.errors import GalaugError, ParamError
from galaug.ratios import Share, parse_alpha, parse_share, resolve_share

__all__ = ["MixPlan", "plan_mix", "mix_datasets", "parse_gen", "parse_gen_share"]


def parse_gen(value: str | int | float, *, n_real: int, n_gen: int | None) -> int:
    """Generated count from ``"5x"`` (times the full real set), a fraction/percentage of the generated set, or a count.

    ``n_gen`` is None when images are generated on the fly (no upper bound;
    then a fraction needs a multiple or a count instead). The grammar is
    :mod:`galaug.ratios`'s; errors are :class:`galaug.errors.ParamError`
    naming ``gen``.
    """
    on_the_fly = n_gen is None
    share = parse_gen_share(value, on_the_fly=on_the_fly)
    k = share.of(n_real if share.kind == "multiple" else (n_gen or 0))
    if not on_the_fly and k > n_gen:
        if share.kind == "multiple":
            raise ParamError("gen", "{gen} {text} asks for {k} generated images but {gen_data} holds {n_gen} "
                             "(generate more, or use {generator})", text=share.text, k=k, n_gen=n_gen)
        raise ParamError("gen", "{gen} {text} asks for more generated images than the {n_gen} in {gen_data} "
                         "(generate more, or use {generator})", text=share.text, n_gen=n_gen)
    return k


def parse_gen_share(value: str | int | float, *, on_the_fly: bool = False) -> Share:
    """The share ``gen`` as written, before any set is opened (see :func:`parse_gen`).

    ``on_the_fly``: images come from a generator, so a fraction of a
    generated set is refused.
    """
    expected = ("a multiple of the real set (5x) or a count (300)" if on_the_fly else
                "a multiple of the real set (5x), a fraction (0.5) or percentage (50%) of {gen_data}, or a count (300)")
    whole = ("1x for as many as the real set" if on_the_fly else
             "1x for as many as the real set, 1.0 or 100% for all of {gen_data}")
    share = parse_share(value, param="gen", multiple=True, expected=expected, whole=whole)
    if share.kind == "fraction" and on_the_fly:
        raise ParamError("gen", "{gen} {text!r}: with {generator} give a multiple (5x) or a count", text=share.text)
    return share


@dataclasses.dataclass
class MixPlan:
    """Which rows of each source go into the mix, and in what order.

    ``order`` (N,) holds 0 for a real row and 1 for a generated row in output
    order (before the windowed permutation); ``real_rows`` and ``gen_rows``
    are sorted source rows.
    """

    real_rows: np.ndarray
    gen_rows: np.ndarray
    order: np.ndarray

    @property
    def n_real(self) -> int:
        return len(self.real_rows)

    @property
    def n_gen(self) -> int:
        return len(self.gen_rows)


def _choose(rng: np.random.Generator, n: int, k: int, *, replace: bool, what: str) -> np.ndarray:
    if k > n and not replace:
        raise ParamError(what, "{%s}: {k} samples asked from {n} without {replace}" % what, k=k, n=n)
    if n == 0 and k > 0:
        raise ParamError(what, "{%s}: the dataset is empty" % what)
    return np.sort(rng.choice(n, size=k, replace=replace)) if k else np.empty(0, np.int64)


def _first(rng: np.random.Generator, n: int, k: int, *, what: str) -> np.ndarray:
    """The first ``k`` of a permutation of ``n`` rows, sorted: nested for every ``k`` with the same seed."""
    if k > n:
        raise ParamError(what, "{%s}: {k} samples asked from {n} without {replace}" % what, k=k, n=n)
    return np.sort(rng.permutation(n)[:k]) if k else np.empty(0, np.int64)


def plan_mix(*, n_real: int, n_gen: int | None, real: str | float | None = None, gen: str | float | None = None,
             alpha: float | None = None, size: int | None = None, seed: int = 0, replace: bool = False,
             nested: bool = False) -> MixPlan:
    """Resolve the counts and choose the rows (see the module docstring).

    ``nested``: each source's rows are the first ones of a permutation fixed
    by the seed alone, so that with one seed a smaller share is part of a
    larger one (a learning curve's sets); not with ``replace``.
    """
    rng = np.random.default_rng(seed)
    if alpha is not None:
        if real is not None or gen is not None:
            raise ParamError("alpha", "{alpha} with {size} replaces {real} and {gen}; give one or the other")
        alpha = parse_alpha(alpha)
        if size is None or size < 1:
            raise ParamError("alpha", "{alpha} needs {size} N (the total number of samples)")
        k_gen = int(rng.binomial(size, alpha))
        k_real = size - k_gen
        if n_gen is not None and k_gen > n_gen and not replace:
            raise ParamError("alpha", "{alpha} {alpha_value} with {size} {size_value} draws {k} generated images but "
                             "{gen_data} holds {n_gen} (use {replace}, a smaller {size}, or {generator})",
                             alpha_value=alpha, size_value=size, k=k_gen, n_gen=n_gen)
        if k_real > n_real and not replace:
            raise ParamError("alpha", "{alpha} {alpha_value} with {size} {size_value} draws {k} real images but "
                             "{real_data} holds {n_real} (use {replace}, a smaller {size}, or a larger {alpha})",
                             alpha_value=alpha, size_value=size, k=k_real, n_real=n_real)
    else:
        if size is not None:
            raise ParamError("size", "{size} goes with {alpha}")
        k_real = resolve_share("1.0" if real is None else real, n_real, param="real")
        k_gen = 0 if gen is None else parse_gen(gen, n_real=n_real, n_gen=n_gen)
    if k_real + k_gen == 0:
        raise GalaugError("the mix would be empty")
    if nested and replace:
        raise ValueError("nested draws are without replacement")
    if nested:
        real_rows = _first(np.random.default_rng([seed, 7]), n_real, k_real, what="real")
        gen_rows = np.arange(k_gen) if n_gen is None else _first(np.random.default_rng([seed, 8]), n_gen, k_gen,
                                                                  what="gen")
    else:
        real_rows = _choose(rng, n_real, k_real, replace=replace, what="real")
        gen_rows = (np.arange(k_gen) if n_gen is None else _choose(rng, n_gen, k_gen, replace=replace, what="gen"))
    order = np.zeros(k_real + k_gen, dtype=np.uint8)
    order[rng.choice(len(order), size=k_gen, replace=False)] = 1
    return MixPlan(real_rows.astype(np.int64), gen_rows.astype(np.int64), order)


def _check_compatible(real: Dataset, gen_bands, gen_shape, gen_scale, where: str, *,
                      assume_same_scale: bool = False) -> None:
    if tuple(gen_bands) != real.bands:
        raise GalaugError(f"{where} has bands {','.join(gen_bands)} but the real set has {','.join(real.bands)}")
    if tuple(gen_shape) != real.image_shape:
        raise GalaugError(f"{where} has images {'x'.join(map(str, gen_shape))} but the real set has "
                          f"{'x'.join(map(str, real.image_shape))}")
    if gen_scale is not None and real.pixel_scale is not None and not np.isclose(
            gen_scale.to_value(real.pixel_scale.unit), real.pixel_scale.value, rtol=1e-6):
        raise GalaugError(f"{where} has pixel scale {gen_scale} but the real set has {real.pixel_scale}")
    if (gen_scale is None) != (real.pixel_scale is None) and not assume_same_scale:
        known, unknown = (where, "the real set") if gen_scale is not None else ("the real set", where)
        raise ParamError("assume_same_scale", "{known} has pixel scale {scale} but {unknown}'s is unknown, so "
                         "galaug cannot check that they match ({assume_same_scale} mixes them anyway)",
                         known=known, unknown=unknown, scale=str(gen_scale if gen_scale is not None
                                                                 else real.pixel_scale))


class _RowStream:
    """Yields the requested (sorted) rows of a source in order, reading one block at a time."""

    def __init__(self, ds: Dataset | None, rows: np.ndarray, fields: tuple[str, ...], *, image_shape: tuple,
                 model=None, seed: int = 0, truncation: float | None = None, block: int = 256) -> None:
        self.ds, self.rows, self.fields, self.model, self.image_shape = ds, rows, fields, model, image_shape
        self.seed, self.truncation, self.block = seed, truncation, block
        self.pos = 0
        #: Where the source's objects table indices go in the mix's tables (ObjectTables.merged), if they move.
        self.object_maps: dict[str, np.ndarray] | None = None

    def take(self, k: int, into: dict[str, np.ndarray], at: np.ndarray) -> None:
        """Put the next ``k`` requested rows of each field (and their row numbers as ``index``) at rows ``at``
        of the arrays ``into``: one read per block of the source, one copy into place."""
        rows = self.rows[self.pos:self.pos + k]
        self.pos += k
        if len(rows) == 0:
            return
        into["index"][at] = rows
        if self.model is not None:  # generate on the fly: rows are sample numbers of (seed, row)
            out = self.model.sample(rows=rows.tolist(), seed=self.seed, truncation=self.truncation)
            for field, key in (("images", "images"), ("latents", "w"), ("z", "z")):
                if field in into:
                    into[field][at] = out[key].float().cpu().numpy()
            return
        i = 0
        while i < len(rows):  # one contiguous read per run of rows that fits a block
            start = rows[i]
            j = np.searchsorted(rows, start + self.block, side="left")
            block = self.ds.read(int(start), int(rows[j - 1]) + 1, fields=self.fields)
            for f, a in block.items():
                if f == "objects" and self.object_maps is not None:
                    a = obj.remap(a, self.object_maps)
                into[f][at[i:j]] = a[rows[i:j] - start]
            i = j


def mix_datasets(out: str | Path, *, real_data: str | Path, real: str | float | None = None,
                 gen_data: str | Path | None = None, gen: str | float | None = None, generator: str | Path | None = None,
                 alpha: float | None = None, size: int | None = None, seed: int = 0, replace: bool = False,
                 truncation: float | None = None, overwrite: bool = False, window_bytes: int = 64 * 2**20,
                 device: str = "cpu", echo=None, allow_outliers: bool = False,
                 assume_same_scale: bool = False, real_rows: np.ndarray | None = None,
                 nested: bool = False) -> Dataset:
    """Write a mix of real and generated images; see the module docstring.

    Parameters
    ----------
    out : path
        The dataset to create (it appears only when complete).
    real_data, gen_data : path
        The real (training) set and a generated set.
    real, gen : str or number
        How many of each (``"0.1"``, ``"10%"``, ``"500"``; ``gen`` also ``"5x"``).
    generator : path, optional
        A run directory: generate the images needed instead of reading ``gen_data``.
    alpha, size : optional
        Each of ``size`` samples is generated with probability ``alpha``.
    replace : bool
        Allow a source row to appear more than once.
    echo : callable, optional
        Called with the resolved counts before anything is written.
    allow_outliers : bool
        Use a generated set that failed the quality gate (:mod:`galaug.quality`;
        its provenance says so), and write images generated on the fly that
        fail it; otherwise either is a :class:`galaug.quality.QualityError`
        and nothing is written. The mix's provenance records the check.
    assume_same_scale : bool
        Mix sets when one has a pixel scale and the other none (recorded);
        otherwise that is an error, since nothing shows that they match.
    nested : bool
        Draw each source's rows as the first ones of a permutation fixed by
        ``seed`` (:func:`plan_mix`): with one seed, the mix of a smaller share
        holds a subset of a larger one's rows.
    real_rows : array of int, optional
        Exactly these rows of the real set and nothing generated, instead of
        ``real``/``gen``/``alpha`` (the training set of an experiment arm's own
        generator, :mod:`galaug.experiment_generators`); recorded as ``rows``.
    """
    if real_rows is not None and (real is not None or gen is not None or alpha is not None or gen_data is not None
                                  or generator is not None):
        raise ValueError("real_rows takes exactly those real rows: give no real, gen, alpha or generated images")
    if (gen_data is None) == (generator is None) and (gen is not None or alpha is not None):
        raise ParamError("gen_data", "give exactly one of {gen_data} and {generator}")
    real_ds = open_dataset(real_data)
    gen_ds = model = None
    checked: dict | None = None  # the quality record of this mix's generated images
    if gen_data is not None:
        gen_ds = open_dataset(gen_data)
        _check_compatible(real_ds, gen_ds.bands, gen_ds.image_shape, gen_ds.pixel_scale, f"{gen_data}",
                          assume_same_scale=assume_same_scale)
        failed = quality.require_passed(gen_ds, allow_outliers=allow_outliers)
        if failed is not None:
            checked = {**failed, "overridden": True, "statistics": f"provenance of {gen_data}"}
    elif generator is not None:
        from galaug.generators import load_generator

        model = load_generator(generator, device=device)
        lay = model.layout
        _check_compatible(real_ds, lay.bands, (len(lay.bands), lay.image_size, lay.image_size), lay.pixel_scale,
                          f"generator {generator}", assume_same_scale=assume_same_scale)
    if real_rows is not None:
        rows = np.unique(np.asarray(real_rows, dtype=np.int64))
        if len(rows) == 0 or rows[0] < 0 or rows[-1] >= len(real_ds):
            raise GalaugError(f"real_rows: {len(rows)} rows, not all within the {len(real_ds)} of {real_data}")
        plan = MixPlan(rows, np.empty(0, np.int64), np.zeros(len(rows), np.uint8))
    else:
        plan = plan_mix(n_real=len(real_ds), n_gen=None if gen_ds is None and model is not None else
                        (len(gen_ds) if gen_ds is not None else 0), real=real, gen=gen, alpha=alpha, size=size,
                        seed=seed, replace=replace, nested=nested)
    if echo is not None:
        echo(f"mix: {plan.n_real} real (of {len(real_ds)}) + {plan.n_gen} generated"
             f"{'' if gen_ds is None else f' (of {len(gen_ds)})'} = {plan.n_real + plan.n_gen} samples")
    # latents and z travel only when every sample can carry them
    keep_latents = plan.n_real == 0 and (model is not None or (gen_ds is not None and gen_ds.latent_dim))
    gen_fields = ("images", "latents", "z") if keep_latents and gen_ds is not None and gen_ds.z_dim else \
        (("images", "latents") if keep_latents and gen_ds is not None else ("images",))
    entry = make_entry("mix", seed=seed, config={"real": None if real is None else str(real),
                                                 "gen": None if gen is None else str(gen), "alpha": alpha,
                                                 "size": size, "replace": replace, "truncation": truncation,
                                                 "assume_same_scale": assume_same_scale,
                                                 **({"nested": True} if nested else {}),
                                                 **({"rows": len(plan.real_rows)} if real_rows is not None else {})},
                       n_real=plan.n_real, n_generated=plan.n_gen, generator=None if generator is None else str(generator))
    # ivar and mask travel when every sample comes from a set that has them; objects when either set has them
    def has(ds: Dataset | None, f: str) -> bool:
        return ds is not None and f in ds.fields

    maps = [f for f in ("ivar", "mask") if (has(real_ds, f) or has(gen_ds, f))
            and (plan.n_real == 0 or has(real_ds, f)) and (plan.n_gen == 0 or has(gen_ds, f))]
    dropped = [f for f in ("ivar", "mask") if (has(real_ds, f) or has(gen_ds, f)) and f not in maps]
    if dropped:
        entry["notes"] = [f"{' and '.join(dropped)} not carried: only some of the samples have them"]
    tables, gen_maps = _object_tables(real_ds, gen_ds)
    real_fields = ("images", *maps) + (("objects",) if real_ds.has_objects else ())
    if gen_ds is not None:
        gen_fields = gen_fields + tuple(maps) + (("objects",) if gen_ds.has_objects else ())
    parents = [real_ds] + ([gen_ds] if gen_ds is not None else [])
    if model is not None:
        entry["parents"] = [real_ds.id]
    c, h, w = real_ds.image_shape
    latent_dim = (model.w_dim if model is not None else gen_ds.latent_dim) if keep_latents else None
    z_dim = (model.z_dim if model is not None else gen_ds.z_dim) if keep_latents else None
    writer = create_dataset(out, bands=real_ds.bands, image_size=(h, w), pixel_scale=real_ds.meta.get("pixel_scale"),
                            flux_unit=real_ds.flux_unit, latent_dim=latent_dim, z_dim=z_dim or None,
                            ivar="ivar" in maps, mask="mask" in maps, objects=tables,
                            provenance=entry, parents=parents, overwrite=overwrite, n=len(plan.order))
    streams = (_RowStream(real_ds, plan.real_rows, real_fields, image_shape=real_ds.image_shape),
               _RowStream(gen_ds, plan.gen_rows, gen_fields, image_shape=real_ds.image_shape, model=model, seed=seed,
                          truncation=truncation))
    streams[1].object_maps = gen_maps
    window = max(1, window_bytes // (4 * c * h * w))
    rng = np.random.default_rng([seed, 1])
    if model is not None and plan.n_gen:  # generated on the fly: the quality gate sees every image
        training, source = quality.run_stats(generator)
        seen = quality.StatsAccumulator(plan.n_gen, real_ds.bands, real_ds.image_shape)
    with writer, progress(total=len(plan.order), desc="mix") as bar:
        for start in range(0, len(plan.order), window):
            origins = plan.order[start:start + window]
            m, n_real = len(origins), int((origins == 0).sum())
            # the window's real rows, then its generated rows, in a random order: concatenated row i goes to
            # row place[i] of the window, written there straight from the sources
            perm = rng.permutation(m)
            place = np.empty(m, dtype=np.int64)
            place[perm] = np.arange(m)
            out = {"images": np.empty((m, c, h, w), np.float32), "index": np.empty(m, np.int64),
                   "origin": np.zeros(m, np.uint8)}
            out["origin"][place[n_real:]] = 1
            if keep_latents:
                out["latents"] = np.empty((m, latent_dim), np.float32)
                if z_dim:
                    out["z"] = np.empty((m, z_dim), np.float32)
            for f in maps:
                out[f] = np.empty((m, c, h, w), np.float32 if f == "ivar" else np.uint16)
            if tables is not None:
                out["objects"] = obj.empty_rows(m)  # generated rows keep these: no identity
            streams[0].take(n_real, {k: out[k] for k in ("index", *real_fields)}, place[:n_real])
            streams[1].take(m - n_real, out, place[n_real:])
            writer.append(out["images"], origin=out["origin"], index=out["index"],
                          **{k: out[k] for k in ("latents", "z", "ivar", "mask", "objects") if k in out})
            bar.update(m)
            if model is not None and m > n_real:
                seen.add(out["images"][place[n_real:]], out["index"][place[n_real:]])
        if model is not None and plan.n_gen:  # raising here writes nothing
            checked = quality.gate(seen.result(), training, allow_outliers=allow_outliers,
                                   where=f"the images of {generator} are", source=source)
        if checked is not None:
            writer.set_metadata(provenance={"quality": checked})
    return open_dataset(writer.path)


def _object_tables(real: Dataset, gen: Dataset | None) -> tuple[obj.ObjectTables | None, dict | None]:
    """The mix's objects tables (None when neither set has objects) and the map of the generated set's indices."""
    if not real.has_objects and (gen is None or not gen.has_objects):
        return None, None
    tables = real.object_tables or obj.ObjectTables()
    if gen is None or not gen.has_objects:
        return tables, None
    return tables.merged(gen.object_tables)
