"""The ``denoise`` task: its config and the component; training in :mod:`galaug_denoise.train`,
evaluation in :mod:`galaug_denoise.evaluate`.

Training degrades the clean images on the fly (a fresh draw every epoch),
learns to undo it with MSE in normalised units and Adam, and stops early
on a held-out part degraded with fixed seeds. Evaluation degrades a
validation set with fixed seeds under four conditions and reports MSE,
PSNR and SSIM of the model's output, of the degraded input itself and of
classical baselines tuned on the training data (:mod:`galaug_denoise.baselines`).
See ``docs/denoise.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from galaug.degrade import Pipeline
from galaug.kinds import Task
from galaug_denoise.baselines import BASELINES
from galaug_denoise.data import Pairs, resolve_pairs
from galaug_denoise.evaluate import NOISE_FACTOR, TEST_SETS, evaluate_denoiser, strengthen_noise
from galaug_denoise.models import ModelConfig
from galaug_denoise.train import train_denoiser

__all__ = ["DenoiseConfig", "Denoise", "Pairs", "TEST_SETS", "NOISE_FACTOR", "resolve_pairs", "strengthen_noise",
           "train_denoiser", "evaluate_denoiser"]


@dataclasses.dataclass
class DenoiseConfig:
    """Options of the denoiser (``galaug config task denoise``)."""

    #: resnet: the study's residual CNN without downsampling; unet: a small U-Net (sizes divisible by 4)
    model: Literal["resnet", "unet"] = "resnet"
    #: filters of the resnet blocks, or of the U-Net's first level
    width: int = 32
    #: residual blocks of the resnet
    blocks: int = 5
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    #: cosine: from lr to lr_min over `epochs`; step: times lr_gamma every lr_step epochs
    schedule: Literal["cosine", "step"] = "cosine"
    lr_min: float = 0.0
    lr_step: int = 10
    lr_gamma: float = 0.5
    #: fraction of the training rows held out for early stopping (0: none; the last epoch is kept)
    holdout: float = 0.1
    #: stop after this many epochs without a lower held-out loss (0: never)
    patience: int = 5
    #: random flips and 90-degree rotations of the training images
    augment: bool = True
    #: per-band intensity normalisation fitted on the clean training images: robust (linear) or asinh
    normalize: Literal["robust", "asinh"] = "robust"
    #: training images the normalisation is fitted on
    normalize_samples: int = 4096
    checkpoint_every: int = 1
    keep_checkpoints: int = 3
    #: batches per epoch (0: the whole training part)
    max_steps_per_epoch: int = 0
    #: exactly this many batches per epoch, passing over the training rows as often as that takes (0: one pass);
    #: any training set then gets epochs x steps_per_epoch gradient steps (galaug experiment sets it)
    steps_per_epoch: int = 0
    #: DataLoader worker processes reading the store (0: in the training process)
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.model not in ("resnet", "unet"):
            raise ValueError(f"model must be 'resnet' or 'unet', got {self.model!r}")
        if self.schedule not in ("cosine", "step"):
            raise ValueError(f"schedule must be 'cosine' or 'step', got {self.schedule!r}")
        if self.normalize not in ("robust", "asinh"):
            raise ValueError(f"normalize must be 'robust' or 'asinh', got {self.normalize!r}")
        for name in ("width", "blocks", "epochs", "batch_size", "lr_step", "normalize_samples", "checkpoint_every",
                     "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("patience", "max_steps_per_epoch", "steps_per_epoch", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.steps_per_epoch and self.max_steps_per_epoch:
            raise ValueError("give steps_per_epoch (a fixed number of batches per epoch) or max_steps_per_epoch "
                             "(at most so many), not both")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.lr_min < self.lr:
            raise ValueError(f"lr_min must be >= 0 and below lr, got {self.lr_min}")
        if not 0 < self.lr_gamma <= 1:
            raise ValueError(f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")

    def model_config(self, bands: int) -> ModelConfig:
        """The network's sizes for images with ``bands`` bands."""
        return ModelConfig(bands=bands, model=self.model, width=self.width, blocks=self.blocks)


class Denoise(Task):
    """Denoiser (the study's residual CNN or a small U-Net) trained under on-the-fly degradations."""

    name = "denoise"
    Config = DenoiseConfig
    baselines = tuple(BASELINES)

    def train(self, data: Path, run_dir: Path, *, degrade: Pipeline | str | None = None, device: str = "cpu",
              seed: int = 0, resume: bool = False) -> None:
        """Train on ``data`` degraded on the fly (or on its stored pairs); see :func:`train_denoiser`."""
        train_denoiser(self.config, data=Path(data), run_dir=Path(run_dir), degrade=degrade,
                       device=torch.device(device), seed=seed, resume=resume)

    def evaluate(self, run_dir: Path, data: Path, *, degrade: Pipeline | str | None = None, device: str = "cpu",
                 seed: int = 0, baselines: str | Sequence[str] | None = None) -> dict[str, Any]:
        """Metrics of the run's best model and of the classical baselines on ``data``; see :func:`evaluate_denoiser`."""
        return evaluate_denoiser(Path(run_dir), Path(data), degrade=degrade, device=torch.device(device),
                                 seed=seed, batch_size=self.config.batch_size, baselines=baselines)
