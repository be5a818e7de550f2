"""Denoising networks: the study's residual CNN without downsampling, and a small U-Net.

Both take a degraded image (B, C, H, W) in normalised units and return the
restored image of the same shape. They learn the residual: the output is
``input + net(input)``, with the last convolution initialised to zero so
that an untrained network is the identity (its error is the noisy input's)
and training only has to learn the correction.

:class:`ResNetDenoiser` (the study's model): a 5x5 convolution to 32
filters, five residual blocks of two 5x5 convolutions with 32 filters and
LeakyReLU, and a 5x5 convolution back to the bands; the resolution never
changes. :class:`UNet`: two 3x3 convolutions per level, two downsamplings
(2x2 max pooling) to 4x the width, transposed-convolution upsampling and
skip connections by concatenation; image sizes must be divisible by 4.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import nn

__all__ = ["ModelConfig", "ResBlock", "ResNetDenoiser", "DoubleConv", "UNet", "build_model"]


@dataclasses.dataclass
class ModelConfig:
    """Sizes of a denoising network.

    Attributes
    ----------
    bands : int
        Channels in and out.
    model : {"resnet", "unet"}
    width : int
        Filters of the residual blocks (resnet) or of the first level (unet;
        doubled at each of the two lower levels).
    blocks : int
        Residual blocks (resnet only).
    kernel : int
        Convolution size of the resnet (odd); the U-Net uses 3x3.
    negative_slope : float
        Slope of the LeakyReLU for negative inputs.
    """

    bands: int
    model: Literal["resnet", "unet"] = "resnet"
    width: int = 32
    blocks: int = 5
    kernel: int = 5
    negative_slope: float = 0.2

    def __post_init__(self) -> None:
        if self.model not in ("resnet", "unet"):
            raise ValueError(f"model must be 'resnet' or 'unet', got {self.model!r}")
        if self.bands < 1 or self.width < 1 or self.blocks < 1:
            raise ValueError("bands, width and blocks must be at least 1")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd number, got {self.kernel}")


def _conv(c_in: int, c_out: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)


def _zero(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class ResBlock(nn.Module):
    """``x + conv(act(conv(x)))``, then LeakyReLU: two same-size convolutions around a skip."""

    def __init__(self, width: int, kernel: int, negative_slope: float) -> None:
        super().__init__()
        self.conv1 = _conv(width, width, kernel)
        self.conv2 = _conv(width, width, kernel)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.act(self.conv1(x))))


class ResNetDenoiser(nn.Module):
    """The study's residual CNN: encoder conv, ``blocks`` residual blocks, mirrored decoder conv."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.encoder = _conv(cfg.bands, cfg.width, cfg.kernel)
        self.act = nn.LeakyReLU(cfg.negative_slope)
        self.blocks = nn.Sequential(*(ResBlock(cfg.width, cfg.kernel, cfg.negative_slope) for _ in range(cfg.blocks)))
        self.decoder = _zero(_conv(cfg.width, cfg.bands, cfg.kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.decoder(self.blocks(self.act(self.encoder(x))))


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by LeakyReLU."""

    def __init__(self, c_in: int, c_out: int, negative_slope: float) -> None:
        super().__init__(_conv(c_in, c_out, 3), nn.LeakyReLU(negative_slope),
                         _conv(c_out, c_out, 3), nn.LeakyReLU(negative_slope))


class UNet(nn.Module):
    """A small U-Net: three levels (two downsamplings), skip connections, residual output.

    Shapes for an input (B, C, H, W) and width w::

        enc1 (B, w, H, W) -> pool -> enc2 (B, 2w, H/2, W/2) -> pool -> mid (B, 4w, H/4, W/4)
        up2(mid) ++ enc2 -> dec2 (B, 2w, H/2, W/2) -> up1 ++ enc1 -> dec1 (B, w, H, W) -> 1x1 conv -> (B, C, H, W)
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w, slope = cfg.width, cfg.negative_slope
        self.enc1 = DoubleConv(cfg.bands, w, slope)
        self.enc2 = DoubleConv(w, 2 * w, slope)
        self.mid = DoubleConv(2 * w, 4 * w, slope)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = DoubleConv(4 * w, 2 * w, slope)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = DoubleConv(2 * w, w, slope)
        self.out = _zero(nn.Conv2d(w, cfg.bands, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 4 or w % 4:
            raise ValueError(f"the U-Net needs image sizes divisible by 4, got {h}x{w}")
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return x + self.out(d1)


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network that ``cfg.model`` names."""
    return ResNetDenoiser(cfg) if cfg.model == "resnet" else UNet(cfg)
