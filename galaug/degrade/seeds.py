"""Per-sample and per-step seeds: a documented integer hash, the same on every machine.

Every random draw of a degradation is made by a generator seeded with a
63-bit integer derived from the user's seed, so that sample ``i`` depends
only on ``(seed, i)`` and never on the batch it was in::

    sample_seed = derive_seeds(seed, row)           # row of the sample in the dataset
    step_seed   = derive_seeds(sample_seed, k)      # step k (0-based) of the pipeline

with

    derive(s, k) = mix(mix(s) + (k + 1) * 0x9E3779B97F4A7C15) >> 1      (mod 2**64)
    mix(z)       = splitmix64's finaliser:
                   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
                   z = (z ^ (z >> 27)) * 0x94D049BB133111EB
                   z ^ (z >> 31)

``s`` and ``k`` are taken modulo 2**64 (a negative int64 by its two's
complement bits). ``mix`` is a bijection, so two parents never collide on
the same ``k``, and the final shift keeps the result in ``[0, 2**63)``,
which fits an int64 tensor and ``torch.Generator.manual_seed``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["derive_seeds", "mix64"]

_GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK = (1 << 64) - 1


def _as_uint64(value: Any) -> np.ndarray:
    """Integers (Python ints of any size, int64 or uint64 arrays) as a 1-d uint64 array, modulo 2**64."""
    if isinstance(value, (int, np.integer)):
        return np.array([int(value) & _MASK], dtype=np.uint64)
    arr = np.asarray(value)
    if arr.dtype == np.uint64:
        return np.atleast_1d(arr).copy()
    if arr.dtype.kind not in "iu":
        raise TypeError(f"seeds must be integers, got dtype {arr.dtype}")
    return np.atleast_1d(arr.astype(np.int64)).view(np.uint64).copy()


def mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic, a bijection)."""
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def derive_seeds(parent: Any, index: Any) -> np.ndarray:
    """Child seeds ``derive(parent, index)`` in ``[0, 2**63)`` as an int64 array.

    Parameters
    ----------
    parent : int or array of int
        One seed, or one per element.
    index : int or array of int
        The child's index (a row, a step); broadcast against ``parent``.

    Returns
    -------
    numpy.ndarray
        int64, of the broadcast shape of the inputs (at least 1-d).
    """
    p = mix64(_as_uint64(parent))
    k = _as_uint64(index)
    step = (k + np.uint64(1)) * np.uint64(_GOLDEN)
    return (mix64(p + step) >> np.uint64(1)).astype(np.int64)
