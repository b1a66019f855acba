"""Decoders G_X (noisy, content + noise code) and G_Y (clean, content code only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from invrep_cli.models.blocks import ConvBlock, ResBlock, pad_reflect


class Decoder(nn.Module):
    """Residual blocks, then per downsampling: nearest x2, conv5x5 halving channels, norm, ReLU;
    then conv7x7 to the image and tanh (output in [-1, 1])."""

    def __init__(
        self,
        in_ch: int = 256,
        out_ch: int = 3,
        n_upsample: int = 2,
        n_res_blocks: int = 4,
        norm: str = "channel",
    ) -> None:
        super().__init__()
        self.res_blocks = nn.Sequential(*[ResBlock(in_ch, norm="batch") for _ in range(n_res_blocks)])
        ups: list[nn.Module] = []
        ch = in_ch
        for _ in range(n_upsample):
            ups.append(ConvBlock(ch, ch // 2, 5, norm=norm, act="relu"))
            ch //= 2
        self.up_convs = nn.ModuleList(ups)
        self.to_image = nn.Conv2d(ch, out_ch, 7)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.res_blocks(z)
        for conv in self.up_convs:
            x = conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return torch.tanh(self.to_image(pad_reflect(x, 3)))
