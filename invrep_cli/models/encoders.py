"""Content encoders (E_X, E_Y) and the noise encoder (E_X^N)."""

from __future__ import annotations

import torch
from torch import nn

from invrep_cli.models.blocks import ConvBlock, ResBlock


def _downsampling_stem(in_ch: int, width: int, n_downsample: int) -> tuple[nn.Sequential, int]:
    """conv7x7 then ``n_downsample`` conv4x4/2, each BatchNorm + ReLU; returns (stem, channels)."""
    layers: list[nn.Module] = [ConvBlock(in_ch, width, 7, norm="batch")]
    ch = width
    for _ in range(n_downsample):
        # a 4x4/2 conv with padding 1 maps H to H/2 exactly
        layers.append(ConvBlock(ch, ch * 2, 4, stride=2, padding=1, norm="batch"))
        ch *= 2
    return nn.Sequential(*layers), ch


class ContentEncoder(nn.Module):
    """Image -> shared content code (latent_channels x H/4 x W/4 for the default shape).

    ``forward(x, with_skips=True)`` also returns the stem's features at full, 1/2, ... resolution
    (index = level): what a decoder with skip connections fuses back in.
    """

    def __init__(
        self, in_ch: int = 3, width: int = 64, n_downsample: int = 2, n_res_blocks: int = 4, skips: int = 0
    ) -> None:
        super().__init__()
        stem, ch = _downsampling_stem(in_ch, width, n_downsample)
        self.stem = stem
        self.res_blocks = nn.Sequential(*[ResBlock(ch, norm="batch") for _ in range(n_res_blocks)])
        self.out_channels = ch
        self.skips = skips

    def forward(
        self, x: torch.Tensor, with_skips: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        if not with_skips:
            return self.res_blocks(self.stem(x))
        features: list[torch.Tensor] = []
        for layer in self.stem:
            x = layer(x)
            features.append(x)
        # features[level] has resolution 1/2**level; the last one feeds the residual blocks
        return self.res_blocks(x), features[: self.skips]


class NoiseEncoder(nn.Module):
    """Noisy image -> noise code: a spatial map, concatenated with the content code for G_X."""

    def __init__(self, in_ch: int = 3, width: int = 64, n_downsample: int = 2) -> None:
        super().__init__()
        stem, ch = _downsampling_stem(in_ch, width, n_downsample)
        self.stem = stem
        self.project = nn.Conv2d(ch, ch, 1)
        self.out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.stem(x))
