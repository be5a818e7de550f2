"""ALAE networks, top-down in the order they compose: F (mapping), G (synthesis), E (encoder), D (on w).

Pidhorskyi et al., "Adversarial Latent Autoencoders", CVPR 2020, with a
StyleGAN-like generator: a learned constant, two convolutions per
resolution, per-pixel noise inputs and AdaIN styles, equalized learning
rate everywhere. E mirrors G and sums linear maps of the instance-norm
statistics after every convolution into w. D is an MLP on w.

Resolution levels: level k works at 4 * 2**k pixels; ``level`` and
``alpha`` (fade-in of the newest level) serve progressive growing and are
``levels - 1`` and 1 otherwise.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NetConfig", "Mapping", "Synthesis", "Encoder", "Discriminator", "pixel_norm", "upsample2x"]


@dataclasses.dataclass(frozen=True)
class NetConfig:
    """Sizes of the four networks."""

    bands: int
    image_size: int
    latent_dim: int = 128
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.1
    fmap_base: int = 2048
    fmap_max: int = 256
    disc_layers: int = 3

    @property
    def levels(self) -> int:
        return int(math.log2(self.image_size)) - 1  # 4 -> 1 level, 8 -> 2, ...

    def channels(self, level: int) -> int:
        return max(8, min(self.fmap_max, self.fmap_base // (4 * 2**level)))

    def resolution(self, level: int) -> int:
        return 4 * 2**level


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x upsampling (align_corners=False), returned in x's memory format.

    On a CPU, an NCHW tensor goes through channels-last and back here: torch's
    kernel converts it so itself, several times more slowly (4.9 against
    1.4 ms for 32 x 16 x 16 x 16 on one thread); the values are the same.
    """
    if x.device.type != "cpu" or x.is_contiguous(memory_format=torch.channels_last):
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    y = F.interpolate(x.contiguous(memory_format=torch.channels_last), scale_factor=2, mode="bilinear",
                      align_corners=False)
    return y.contiguous()


class EqLinear(nn.Module):
    """Linear layer with equalized learning rate (weights scaled at run time by lr_mul / sqrt(fan_in))."""

    def __init__(self, fin: int, fout: int, *, lr_mul: float = 1.0, bias_init: float | torch.Tensor = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fout, fin) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(fout) + torch.as_tensor(bias_init, dtype=torch.float32) / lr_mul)
        self.w_scale, self.lr_mul = lr_mul / math.sqrt(fin), lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.w_scale, self.bias * self.lr_mul)

    def rowwise(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` with each row a product of its own, (1, fin) @ (fin, fout): a row's bits never depend on
        the batch. They are those of a batch of one (the same BLAS call) where fin * fout >= 400; below that,
        torch's bmm takes a plain loop, still per row."""
        weight = (self.weight * self.w_scale).t().expand(len(x), -1, -1)  # (B, fin, fout), no copy
        return torch.bmm(x[:, None, :], weight)[:, 0] + self.bias * self.lr_mul


class EqConv2d(nn.Module):
    """'Same' convolution with equalized learning rate."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.w_scale, self.padding = 1 / math.sqrt(cin * kernel * kernel), kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.w_scale, self.bias, padding=self.padding)


# -- F: z -> w --------------------------------------------------------------------------

class Mapping(nn.Module):
    """F: pixel norm of z, then ``mapping_layers`` dense layers (learning rate times ``mapping_lr_mul``)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        d = cfg.latent_dim
        self.layers = nn.ModuleList(EqLinear(d, d, lr_mul=cfg.mapping_lr_mul) for _ in range(cfg.mapping_layers))

    def forward(self, z: torch.Tensor, *, rowwise: bool = False) -> torch.Tensor:
        """w = F(z); ``rowwise``: each row computed alone (:meth:`EqLinear.rowwise`), so w is independent of
        the batch, in one call per layer."""
        x = pixel_norm(z)
        for layer in self.layers:
            x = F.leaky_relu(layer.rowwise(x) if rowwise else layer(x), 0.2)
        return x


# -- G: w -> image ----------------------------------------------------------------------

class AdaIN(nn.Module):
    """Instance norm, then a per-channel scale and bias computed from w."""

    def __init__(self, channels: int, w_dim: int) -> None:
        super().__init__()
        self.style = EqLinear(w_dim, 2 * channels, bias_init=torch.cat([torch.ones(channels), torch.zeros(channels)]))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scale, bias = self.style(w)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        return F.instance_norm(x) * scale + bias


class NoisyConv(nn.Module):
    """conv (or the constant) -> + learned-weight per-pixel noise -> LeakyReLU -> AdaIN(w)."""

    def __init__(self, cin: int, cout: int, w_dim: int, *, conv: bool = True) -> None:
        super().__init__()
        self.conv = EqConv2d(cin, cout, 3) if conv else None
        self.noise_weight = nn.Parameter(torch.zeros(cout))  # starts at zero, as in StyleGAN
        self.adain = AdaIN(cout, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        x = x + self.noise_weight[None, :, None, None] * noise  # noise: (B, 1, H, W)
        return self.adain(F.leaky_relu(x, 0.2), w)


class SynthesisBlock(nn.Module):
    """One resolution: (constant | upsample + conv) and a second conv, each with noise and a style."""

    def __init__(self, cin: int, cout: int, w_dim: int, *, first: bool) -> None:
        super().__init__()
        self.first = first
        if first:
            self.const = nn.Parameter(torch.ones(1, cout, 4, 4))
        self.layer1 = NoisyConv(cin, cout, w_dim, conv=not first)
        self.layer2 = NoisyConv(cout, cout, w_dim)

    def forward(self, x: torch.Tensor | None, w1, w2, n1, n2) -> torch.Tensor:
        if self.first:
            x = self.const.expand(w1.shape[0], -1, -1, -1)
        else:
            x = upsample2x(x)
        return self.layer2(self.layer1(x, w1, n1), w2, n2)


class Synthesis(nn.Module):
    """G: styles (B, 2 * levels, w_dim) and noise maps -> image (B, bands, S, S) at ``level``."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = [cfg.channels(k) for k in range(cfg.levels)]
        self.blocks = nn.ModuleList(
            SynthesisBlock(ch[max(k - 1, 0)], ch[k], cfg.latent_dim, first=k == 0) for k in range(cfg.levels))
        self.to_image = nn.ModuleList(EqConv2d(ch[k], cfg.bands, 1) for k in range(cfg.levels))

    @property
    def num_layers(self) -> int:
        return 2 * self.cfg.levels

    def noise_shapes(self, level: int | None = None) -> list[tuple[int, int, int]]:
        """Shape (1, H, W) of each layer's noise map up to ``level``."""
        level = self.cfg.levels - 1 if level is None else level
        return [(1, r, r) for k in range(level + 1) for r in (self.cfg.resolution(k),) * 2]

    def random_noise(self, batch: int, level: int | None = None, *, device=None) -> list[torch.Tensor]:
        return [torch.randn(batch, *s, device=device) for s in self.noise_shapes(level)]

    def forward(self, styles: torch.Tensor, noise: list[torch.Tensor], *, level: int | None = None,
                alpha: float = 1.0) -> torch.Tensor:
        level = self.cfg.levels - 1 if level is None else level
        x = prev = None
        for k in range(level + 1):
            prev = x
            x = self.blocks[k](x, styles[:, 2 * k], styles[:, 2 * k + 1], noise[2 * k], noise[2 * k + 1])
        image = self.to_image[level](x)
        if alpha < 1 and level > 0:  # fade in the newest level (progressive growing)
            low = upsample2x(self.to_image[level - 1](prev))
            image = torch.lerp(low, image, alpha)
        return image


# -- E: image -> w ----------------------------------------------------------------------

def _instance_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance-normalised x and its statistics (B, 2C): channel means and stds."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = torch.sqrt(x.var(dim=(2, 3), keepdim=True, unbiased=False) + 1e-8)
    return (x - mean) / std, torch.cat([mean, std], dim=1).flatten(1)


class EncoderBlock(nn.Module):
    """Two convolutions; after each, its instance-norm statistics are mapped linearly into w."""

    def __init__(self, cin: int, cout: int, w_dim: int, *, last: bool) -> None:
        super().__init__()
        self.conv1, self.conv2 = EqConv2d(cin, cin, 3), EqConv2d(cin, cout, 3)
        self.style1, self.style2 = EqLinear(2 * cin, w_dim), EqLinear(2 * cout, w_dim)
        self.last = last

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, s1 = _instance_stats(F.leaky_relu(self.conv1(x), 0.2))
        x, s2 = _instance_stats(F.leaky_relu(self.conv2(x), 0.2))
        w = self.style1(s1) + self.style2(s2)
        if not self.last:
            x = F.avg_pool2d(x, 2)
        return x, w


class Encoder(nn.Module):
    """E: image at ``level`` -> w (B, w_dim), mirroring G from high resolution down to 4x4."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = [cfg.channels(k) for k in range(cfg.levels)]
        self.from_image = nn.ModuleList(EqConv2d(cfg.bands, ch[k], 1) for k in range(cfg.levels))
        self.blocks = nn.ModuleList(
            EncoderBlock(ch[k], ch[max(k - 1, 0)], cfg.latent_dim, last=k == 0) for k in range(cfg.levels))

    def forward(self, image: torch.Tensor, *, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        level = self.cfg.levels - 1 if level is None else level
        x = F.leaky_relu(self.from_image[level](image), 0.2)
        x, w = self.blocks[level](x)
        if alpha < 1 and level > 0:  # fade in the newest level
            low = F.leaky_relu(self.from_image[level - 1](F.avg_pool2d(image, 2)), 0.2)
            x = torch.lerp(low, x, alpha)
        for k in range(level - 1, -1, -1):
            x, wk = self.blocks[k](x)
            w = w + wk
        return w


# -- D: w -> realness -------------------------------------------------------------------

class Discriminator(nn.Module):
    """D: an MLP on w (``disc_layers`` dense layers, the last with one output)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        d = cfg.latent_dim
        self.layers = nn.ModuleList(EqLinear(d, 1 if i == cfg.disc_layers - 1 else d) for i in range(cfg.disc_layers))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            w = F.leaky_relu(layer(w), 0.2)
        return self.layers[-1](w).squeeze(1)
