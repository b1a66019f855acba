"""Building blocks shared by the LIR networks. Pure modules: no I/O, no device moves."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pad_reflect(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflection padding (the authors' choice); replicate where a map is too small to reflect."""
    if pad == 0:
        return x
    mode = "reflect" if pad < min(x.shape[-2:]) else "replicate"
    return F.pad(x, (pad, pad, pad, pad), mode=mode)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels at each pixel, with a per-channel affine.

    Replaces UNIT's LayerNorm (statistics over the whole C x H x W map), which makes a decoder's
    output at one pixel depend on the whole image. This one keeps the per-sample, batch-independent
    normalisation but is local, so tiled restoration can equal whole-image restoration.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class GlobalLayerNorm(nn.Module):
    """UNIT's LayerNorm: per-sample mean/std over C x H x W, per-channel affine.

    Non-local (see ChannelLayerNorm); kept only so the replacement can be measured against it.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        mean = flat.mean(1).view(-1, 1, 1, 1)
        std = flat.std(1).view(-1, 1, 1, 1)
        x = (x - mean) / (std + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "channel":
        return ChannelLayerNorm(channels)
    if kind == "layer":
        return GlobalLayerNorm(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class ConvBlock(nn.Module):
    """Reflection pad, conv, norm, activation."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        padding: int | None = None,
        norm: str = "batch",
        act: str = "relu",
    ) -> None:
        super().__init__()
        self.padding = (kernel - 1) // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride)
        self.norm = make_norm(norm, out_ch)
        self.act: nn.Module
        if act == "relu":
            self.act = nn.ReLU(inplace=True)
        elif act == "lrelu":
            self.act = nn.LeakyReLU(0.2, inplace=True)
        elif act == "none":
            self.act = nn.Identity()
        else:
            raise ValueError(f"unknown activation {act!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(pad_reflect(x, self.padding))))


class ResBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus identity skip."""

    def __init__(self, channels: int, norm: str = "batch") -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBlock(channels, channels, 3, norm=norm, act="relu"),
            ConvBlock(channels, channels, 3, norm=norm, act="none"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
