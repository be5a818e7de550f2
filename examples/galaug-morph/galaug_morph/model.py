"""The network: an input stretch, a few strided convolutions, pooling, and a two-layer head.

Reads top-down: :class:`InputStretch` (data units to about [-1, 1]),
:class:`Regressor` (images to standardised targets). Any image size works:
the features are pooled over the whole image.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

__all__ = ["ModelConfig", "InputStretch", "Regressor"]


@dataclasses.dataclass
class ModelConfig:
    """Sizes of the network."""

    bands: int
    #: filters of the first convolution; doubled by every level
    width: int = 16
    #: stride-2 convolutions after the first one
    levels: int = 2
    #: predicted values (log10 radius, log10 flux)
    outputs: int = 2


class InputStretch(nn.Module):
    """Per band ``asinh((x - offset) / (softening * scale)) / asinh(1 / softening)``; (C,) buffers.

    ``offset`` is the median pixel and ``scale`` the bright level above it
    (99.9th percentile) of the clean training images, so the bright core
    maps near 1 and faint structure (down to ``softening`` of the bright
    level) is stretched linearly: total fluxes spanning decades stay
    well conditioned.
    """

    def __init__(self, bands: int, *, softening: float = 0.05) -> None:
        super().__init__()
        self.register_buffer("offset", torch.zeros(bands))
        self.register_buffer("scale", torch.ones(bands))
        self.register_buffer("softening", torch.tensor(float(softening)))

    @torch.no_grad()
    def fit(self, pixels: np.ndarray) -> InputStretch:
        """Fit on (C, P) clean pixels per band; returns ``self``."""
        offset = np.median(pixels, axis=1)
        top = np.percentile(pixels, 99.9, axis=1) - offset
        spread = np.abs(pixels - offset[:, None]).max(axis=1)
        scale = np.where(top > 0, top, np.where(spread > 0, spread, 1.0))
        self.offset.copy_(torch.as_tensor(offset, dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        band = lambda t: t.to(x.dtype)[None, :, None, None]  # (C,) -> (1, C, 1, 1)
        y = (x - band(self.offset)) / (band(self.scale) * self.softening)
        return torch.asinh(y) / torch.asinh(1 / self.softening)


class Regressor(nn.Module):
    """Images (B, C, H, W), stretched, to (B, outputs) standardised targets.

    ``conv3x3(C -> w)``, then ``levels`` times ``conv3x3/2 (w -> 2w)``, each
    followed by LeakyReLU(0.2); the mean and the maximum of the last
    features over the image, concatenated (B, 2 * w_last); then
    ``Linear -> LeakyReLU -> Linear`` to the outputs.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cfg.bands, cfg.width, 3, padding=1), nn.LeakyReLU(0.2)]
        ch = cfg.width
        for _ in range(cfg.levels):
            layers += [nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            ch *= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(2 * ch, ch), nn.LeakyReLU(0.2), nn.Linear(ch, cfg.outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # (B, ch, H / 2**levels, W / 2**levels), rounded up
        return self.head(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1))
