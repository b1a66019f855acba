"""Decoders G_X (noisy, content + noise code) and G_Y (clean, content code only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from invrep_cli.models.blocks import ConvBlock, ResBlock, pad_reflect


class Decoder(nn.Module):
    """Residual blocks, then per upsampling: nearest x2, conv (5x5 as the authors, or ``up_kernel``)
    halving channels, norm, ReLU; then conv7x7 to the image and tanh (output in [-1, 1]).

    With ``skips`` > 0 (the full-resolution path of ``invrep``'s restorers) the last ``skips``
    upsampling levels concatenate the encoder's features of the same resolution and fuse them with
    a 3x3 conv; with ``residual`` the decoder predicts a correction added to the image it is given
    (``base``) instead of the image itself through tanh. Measured on this project's CPU, one such
    skip took a supervised prototype from 21.7 to 29.1 dB in the same number of steps: through the
    H/4 bottleneck alone every pixel's detail has to be re-invented by the upsampling convs.
    """

    def __init__(
        self,
        in_ch: int = 256,
        out_ch: int = 3,
        n_upsample: int = 2,
        n_res_blocks: int = 4,
        norm: str = "channel",
        skips: int = 0,
        up_kernel: int = 5,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if not 0 <= skips <= n_upsample:
            raise ValueError(f"skips must be in [0, {n_upsample}], got {skips}")
        self.skips = skips
        self.residual = residual
        self.res_blocks = nn.Sequential(*[ResBlock(in_ch, norm="batch") for _ in range(n_res_blocks)])
        ups: list[nn.Module] = []
        fuses: list[nn.Module] = []
        ch = in_ch
        for i in range(n_upsample):
            ups.append(ConvBlock(ch, ch // 2, up_kernel, norm=norm, act="relu"))
            ch //= 2
            level = n_upsample - 1 - i  # 0 = full resolution
            if level < skips:
                fuses.append(ConvBlock(2 * ch, ch, 3, norm=norm, act="relu"))
        self.up_convs = nn.ModuleList(ups)
        self.skip_fuses = nn.ModuleList(fuses)
        self.out_kernel = 7 if skips == 0 else 3
        self.to_image = nn.Conv2d(ch, out_ch, self.out_kernel)

    def forward(
        self, z: torch.Tensor, skips: list[torch.Tensor] | None = None, base: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``skips[level]``: encoder features at 1/2**level resolution (needed when ``self.skips``);
        ``base``: the image a residual decoder corrects (needed when ``self.residual``)."""
        x = self.res_blocks(z)
        n_up = len(self.up_convs)
        fuse_index = 0
        for i, conv in enumerate(self.up_convs):
            x = conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            level = n_up - 1 - i
            if level < self.skips:
                if skips is None or len(skips) <= level:
                    raise ValueError("this decoder has skip connections: pass the encoder's skip features")
                x = self.skip_fuses[fuse_index](torch.cat([x, skips[level]], 1))
                fuse_index += 1
        out = self.to_image(pad_reflect(x, (self.out_kernel - 1) // 2))
        if self.residual:
            if base is None:
                raise ValueError("this decoder is residual: pass the image it corrects as base")
            return base + out
        return torch.tanh(out)
