"""The velocity network: a U-Net with residual blocks, a time (and condition) embedding, attention at low resolution.

Layout as in DDPM (Ho et al. 2020) and its descendants, kept small: per
level ``blocks`` residual blocks whose GroupNorm output is modulated by the
embedding (scale and shift), a skip connection per level, average-pool
down and nearest-neighbour up. Attention only where the feature map is at
most ``attn_max_resolution`` pixels wide, where it is cheap. Every
operation acts on each sample alone, so a sample's output does not depend
on the others in the batch.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNetConfig", "UNet"]


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    bands: int
    image_size: int
    #: channels of the first level; level i has width * mults[i]
    width: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    blocks: int = 1
    attn_max_resolution: int = 8
    #: number of condition columns (0: unconditional)
    cond_dim: int = 0

    @property
    def channels(self) -> list[int]:
        return [self.width * m for m in self.mults]

    def resolution(self, level: int) -> int:
        return self.image_size // 2 ** level


def _groups(ch: int) -> int:
    return math.gcd(ch, 8)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000, as for DDPM's integer steps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, 2 * cout)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class Attention(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.heads = max(1, ch // 32)
        self.norm, self.qkv, self.proj = nn.GroupNorm(_groups(ch), ch), nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, hw, c/heads)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """v(x_t, t, c): the velocity of the flow at time t, for images x_t (B, C, H, W) in stretched units."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        emb = 4 * cfg.width
        self.time = nn.Sequential(nn.Linear(cfg.width, emb), nn.SiLU(), nn.Linear(emb, emb))
        if cfg.cond_dim:
            self.cond = nn.Sequential(nn.Linear(cfg.cond_dim, emb), nn.SiLU(), nn.Linear(emb, emb))
            self.null = nn.Parameter(torch.zeros(emb))  # the embedding of "no condition" (guidance, dropout)
        chans = cfg.channels
        self.stem = nn.Conv2d(cfg.bands, chans[0], 3, padding=1)
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        cin = chans[0]
        for level, ch in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks):
                blocks.append(ResBlock(cin, ch, emb))
                cin = ch
            attn = Attention(ch) if cfg.resolution(level) <= cfg.attn_max_resolution else nn.Identity()
            self.down.append(nn.ModuleDict({"blocks": blocks, "attn": attn}))
        self.mid1, self.mid_attn, self.mid2 = ResBlock(cin, cin, emb), Attention(cin), ResBlock(cin, cin, emb)
        for level in reversed(range(len(chans))):
            ch = chans[level]
            blocks = nn.ModuleList()
            for i in range(cfg.blocks):
                blocks.append(ResBlock(cin + (ch if i == 0 else 0), ch, emb))
                cin = ch
            attn = Attention(ch) if cfg.resolution(level) <= cfg.attn_max_resolution else nn.Identity()
            self.up.append(nn.ModuleDict({"blocks": blocks, "attn": attn}))
        self.head = nn.Sequential(nn.GroupNorm(_groups(cin), cin), nn.SiLU(), nn.Conv2d(cin, cfg.bands, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def embed(self, t: torch.Tensor, cond: torch.Tensor | None, keep: torch.Tensor | None) -> torch.Tensor:
        """Time embedding plus the condition's (``keep`` 0 replaces a row's condition by the null embedding)."""
        e = self.time(timestep_embedding(t, self.cfg.width))
        if self.cfg.cond_dim:
            if cond is None:
                c = self.null.expand(len(t), -1)
            else:
                c = self.cond(cond)
                if keep is not None:
                    c = torch.where(keep[:, None] > 0, c, self.null.expand_as(c))
            e = e + c
        return F.silu(e)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t, cond, keep)
        h = self.stem(x)
        skips = []
        for level, stage in enumerate(self.down):
            for block in stage["blocks"]:
                h = block(h, emb)
            h = stage["attn"](h)
            skips.append(h)
            if level < len(self.down) - 1:
                h = F.avg_pool2d(h, 2)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, stage in enumerate(self.up):
            skip = skips.pop()
            if i > 0:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            for j, block in enumerate(stage["blocks"]):
                h = block(torch.cat([h, skip], dim=1) if j == 0 else h, emb)
            h = stage["attn"](h)
        return self.head(h)
