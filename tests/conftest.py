from __future__ import annotations

import numpy as np
import pytest

import galaug
from galaug import make_entry

pytest_plugins = ["galaug.testing"]


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch):
    monkeypatch.setenv("GALAUG_PROGRESS", "0")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module: small batches gain nothing from a second thread, and two shared
    cores contended by another job make two threads several times slower. Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def galaxy_images(n: int, *, bands: int = 3, size: int = 16, seed: int = 0) -> np.ndarray:
    """Elliptical exponential blobs with noise: cheap, deterministic, float and multi-band."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.empty((n, bands, size, size), dtype=np.float32)
    for i in range(n):
        q, theta, r = rng.uniform(0.4, 1), rng.uniform(0, np.pi), rng.uniform(1.5, size / 5)
        xr = x * np.cos(theta) + y * np.sin(theta)
        yr = (-x * np.sin(theta) + y * np.cos(theta)) / q
        profile = np.exp(-np.hypot(xr, yr) / r)
        for b in range(bands):
            out[i, b] = (1 + b) * 100 * profile + rng.normal(0, 1, (size, size))
    return out


@pytest.fixture
def make_dataset(tmp_path):
    """Write a small dataset; returns the opened :class:`galaug.Dataset`."""
    counter = iter(range(10_000))

    def make(n: int = 40, *, name: str | None = None, bands=("g", "r", "i"), size: int = 16,
             params: bool = False, seed: int = 0, chunk_bytes: int = 16 * 16 * 3 * 4 * 8, **kw):
        path = tmp_path / (name or f"ds{next(counter)}.zarr")
        images = galaxy_images(n, bands=len(bands), size=size, seed=seed)
        extra = {}
        if params:
            extra = {"param_names": ["flux", "radius"], "param_units": ["nJy", "arcsec"]}
        with galaug.create_dataset(path, bands=bands, image_size=size, provenance=make_entry("test", seed=seed),
                                   chunk_bytes=chunk_bytes, **extra, **kw) as w:
            for start in range(0, n, 7):
                batch = images[start:start + 7]
                w.append(batch, params=np.stack([batch.sum((1, 2, 3)), np.full(len(batch), 2.0)], 1) if params else None)
        return galaug.open_dataset(path)

    return make
