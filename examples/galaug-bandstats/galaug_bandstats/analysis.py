"""The ``band-stats`` analysis."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from galaug import GalaugError, open_dataset
from galaug.kinds import Analysis


@dataclasses.dataclass
class BandStatsConfig:
    bins: int = 100
    max_samples: int = 5000
    log_counts: bool = True

    def __post_init__(self):
        if self.bins < 2:
            raise ValueError("bins must be at least 2")
        if self.max_samples < 1:
            raise ValueError("max_samples must be at least 1")


class BandStats(Analysis):
    """Per-band sky level, noise, flux percentiles and pixel histograms of datasets."""

    name = "band-stats"
    Config = BandStatsConfig

    def run(self, inputs: list[Path], out_dir: Path, *, seed: int) -> dict:
        datasets = [open_dataset(p) for p in inputs]
        bands = datasets[0].bands
        for ds in datasets[1:]:
            if ds.bands != bands:
                raise GalaugError(f"{ds.path}: bands {','.join(ds.bands)} differ from {','.join(bands)}")
        pixels = []
        for ds in datasets:  # at most max_samples, read as one contiguous range
            images = ds.read(0, self.config.max_samples, fields=["images"])["images"]
            pixels.append(images.transpose(1, 0, 2, 3).reshape(len(bands), -1))
        results = {}
        for ds, pix in zip(datasets, pixels):
            per_band = {}
            for b, band in enumerate(bands):
                x = pix[b]
                finite = x[np.isfinite(x)]
                sky = float(np.median(finite))
                sigma = float(1.4826 * np.median(np.abs(finite - sky)))
                p1, p50, p99 = (float(v) for v in np.percentile(finite, [1, 50, 99]))
                per_band[band] = {"sky": sky, "sky_sigma": sigma, "p1": p1, "p50": p50, "p99": p99,
                                  "nonfinite_fraction": float(1 - finite.size / x.size)}
            results[str(ds.path)] = {"n_used": int(pix.shape[1] // np.prod(ds.image_shape[1:])), "bands": per_band}
        self._plot(bands, inputs, pixels, out_dir / "histograms.png")
        return {"datasets": results, "figure": "histograms.png"}

    def _plot(self, bands, inputs, pixels, path: Path) -> None:
        from galaug.viz import pyplot

        plt = pyplot()

        fig, axes = plt.subplots(1, len(bands), figsize=(3.2 * len(bands), 2.8), squeeze=False)
        for b, (band, ax) in enumerate(zip(bands, axes[0])):
            stacked = np.concatenate([p[b][np.isfinite(p[b])] for p in pixels])
            edges = np.histogram_bin_edges(stacked, bins=self.config.bins,
                                           range=tuple(np.percentile(stacked, [0.1, 99.9])))
            for name, pix in zip(inputs, pixels):
                ax.hist(pix[b][np.isfinite(pix[b])], bins=edges, histtype="step", density=True,
                        log=self.config.log_counts, label=Path(name).name)
            ax.set_title(band)
            ax.set_xlabel("pixel value")
        axes[0][0].set_ylabel("density")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
