"""The ``interpolate`` analysis: a K x K grid decoded from bilinear interpolation between four latents.

Smoothness figure: the largest image change between grid neighbours,
relative to the even step (the mean corner-to-corner change along the
grid's four edges divided by K - 1). A perfectly even path scores 1; a
jump scores more. Beside it, the same figure for a linear cross-fade of the
four corner images in pixel space, and the ratio of the two.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import numpy as np

from galaug import GalaugError, open_dataset
from galaug.devices import device_name
from galaug.kinds import Analysis
from galaug.viz import pick_rgb_bands, save_grid

from galaug_analyses._common import decode, load_run, sample

__all__ = ["InterpolateConfig", "Interpolate", "bilinear", "smoothness"]


@dataclasses.dataclass
class InterpolateConfig:
    """Options of ``galaug analyze interpolate RUN [DATA.zarr]``."""

    #: grid size K (K x K images, corners included)
    k: int = 7
    #: ``random``: four latents drawn with the seed; ``encode``: the encodings of ``rows`` of DATA
    corners: Literal["random", "encode"] = "random"
    #: four row numbers of DATA for ``corners = "encode"`` (top left, top right, bottom left, bottom right)
    rows: list[int] = dataclasses.field(default_factory=list)
    #: random grids measured (the figure shows the first); ``encode`` makes one
    grids: int = 4
    #: truncation psi of random corners (None: none)
    truncation: float | None = None
    #: bands shown: one (grey) or three (R, G, B); empty: the default choice
    bands: list[str] = dataclasses.field(default_factory=list)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.k < 3:
            raise ValueError("k must be at least 3")
        if self.grids < 1:
            raise ValueError("grids must be at least 1")
        if self.corners == "encode" and len(self.rows) != 4:
            raise ValueError(f"corners = 'encode' needs four rows, got {len(self.rows)}")
        if any(r < 0 for r in self.rows):
            raise ValueError("rows must be non-negative")
        if self.truncation is not None and not 0 <= self.truncation <= 1:
            raise ValueError("truncation must be in [0, 1]")


def bilinear(corners: np.ndarray, k: int) -> np.ndarray:
    """(K*K, ...) row-major grid between four corners (4, ...): top left, top right, bottom left, bottom right."""
    u = np.linspace(0.0, 1.0, k)
    a, b, c, d = (np.asarray(x, dtype=np.float64) for x in corners)
    extra = (None,) * a.ndim
    uu, vv = u[None, :][(...,) + extra], u[:, None][(...,) + extra]  # column weight u, row weight v
    grid = (1 - vv) * ((1 - uu) * a + uu * b) + vv * ((1 - uu) * c + uu * d)
    return grid.reshape((k * k,) + a.shape)


def smoothness(images: np.ndarray, k: int) -> dict[str, float]:
    """Largest and mean neighbour-to-neighbour change of a (K*K, ...) grid, over the even step.

    The even step is the mean change between adjacent corners (the four
    edges of the grid) divided by K - 1: the step a uniform path would take.
    """
    g = np.asarray(images, dtype=np.float64).reshape(k, k, -1)
    steps = np.concatenate([np.linalg.norm(np.diff(g, axis=1), axis=-1).ravel(),
                            np.linalg.norm(np.diff(g, axis=0), axis=-1).ravel()])
    c = g[[0, 0, -1, -1], [0, -1, 0, -1]]
    edges = [np.linalg.norm(c[0] - c[1]), np.linalg.norm(c[2] - c[3]), np.linalg.norm(c[0] - c[2]),
             np.linalg.norm(c[1] - c[3])]
    even = float(np.mean(edges)) / (k - 1)
    if even == 0:
        raise ValueError("the four corner images are identical: nothing to interpolate")
    return {"max_step_over_even": float(steps.max() / even), "mean_step_over_even": float(steps.mean() / even)}


class Interpolate(Analysis):
    """Bilinear interpolation between four latents on a K x K grid, with a smoothness figure."""

    name = "interpolate"
    Config = InterpolateConfig

    def run(self, inputs: list[Path], out_dir: Path, *, seed: int) -> dict[str, Any]:
        cfg = self.config
        if len(inputs) not in (1, 2):
            raise GalaugError(f"interpolate takes RUN [DATA.zarr], got {len(inputs)} inputs")
        model = load_run(inputs[0], device=device_name(cfg.device))
        try:
            channels = pick_rgb_bands(model.layout.bands, cfg.bands or None)
        except ValueError as exc:
            raise GalaugError(str(exc)) from None
        if cfg.corners == "encode":
            if len(inputs) != 2:
                raise GalaugError("corners = 'encode' needs a dataset: galaug analyze interpolate RUN DATA.zarr")
            all_corners = [self._encoded(model, inputs[1])]
        else:
            w = sample(model, 4 * cfg.grids, seed=seed, truncation=cfg.truncation)["w"]
            all_corners = list(w.reshape(cfg.grids, 4, -1))

        grids = []
        for g, corners in enumerate(all_corners):
            images = decode(model, bilinear(corners, cfg.k).astype(np.float32), space="w", noise_seed=seed)
            fade = bilinear(images[[0, cfg.k - 1, cfg.k * (cfg.k - 1), cfg.k * cfg.k - 1]], cfg.k)
            try:
                latent, pixel = smoothness(images, cfg.k), smoothness(fade, cfg.k)
            except ValueError as exc:
                raise GalaugError(f"grid {g}: {exc}") from None
            grids.append({"latent": latent, "pixel_crossfade": pixel,
                          "ratio": latent["max_step_over_even"] / pixel["max_step_over_even"]})
            if g == 0:
                save_grid(images, out_dir / "interpolation.png", channels=channels, ncols=cfg.k,
                          title=f"Bilinear interpolation in w between four corners ({cfg.corners})")
                save_grid(fade.astype(np.float32), out_dir / "crossfade.png", channels=channels, ncols=cfg.k,
                          title="The same corners cross-faded in pixel space")
        latent_max = [g["latent"]["max_step_over_even"] for g in grids]
        pixel_max = float(np.mean([g["pixel_crossfade"]["max_step_over_even"] for g in grids]))
        corners = "encodings of four images" if cfg.corners == "encode" else "drawn at random"
        return {
            "k": cfg.k, "corners": cfg.corners, "rows": cfg.rows if cfg.corners == "encode" else None,
            "checkpoint_step": model.step, "grids": grids,
            "max_step_over_even": float(np.mean(latent_max)),
            "pixel_crossfade_max_step_over_even": pixel_max,
            "ratio_to_crossfade": float(np.mean([g["ratio"] for g in grids])),
            "figures": ["interpolation.png", "crossfade.png"],
            # what the figures (grid 0) show, measured: the largest step between neighbours against an even one
            "captions": {"interpolation.png": f"Bilinear interpolation in w between four corner latents "
                                              f"({corners}), every grid point decoded with the same noise; the "
                                              f"largest step between neighbouring images is "
                                              f"{grids[0]['latent']['max_step_over_even']:.2f} times an even step.",
                         "crossfade.png": "The same corners blended in pixel space: the images between the "
                                          "corners are weighted sums of the corner images; the largest step is "
                                          f"{grids[0]['pixel_crossfade']['max_step_over_even']:.2f} times an "
                                          "even step."},
            "table": (f"| grid path | largest step / even step |\n|---|---|\n"
                      f"| latent (w) interpolation | {np.mean(latent_max):.2f} |\n"
                      f"| pixel cross-fade | {pixel_max:.2f} |"),
        }

    def _encoded(self, model, data: Path) -> np.ndarray:
        ds = open_dataset(data)
        if ds.bands != model.layout.bands or ds.image_shape[1] != model.layout.image_size:
            raise GalaugError(f"{ds.path}: {','.join(ds.bands)} at {ds.image_shape[1]} px does not match the "
                              f"generator's {','.join(model.layout.bands)} at {model.layout.image_size} px")
        bad = [r for r in self.config.rows if r >= len(ds)]
        if bad:
            raise GalaugError(f"{ds.path}: rows {bad} out of range (it has {len(ds)} images)")
        images = np.stack([ds.read(r, r + 1, fields=["images"])["images"][0] for r in self.config.rows])
        return model.encode(images).float().cpu().numpy()
