"""Image discriminators (multi-scale PatchGAN, D_X and D_Y) and the representation
discriminator D_R on latent codes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from invrep_cli.models.blocks import pad_reflect


class _PatchGAN(nn.Module):
    def __init__(self, in_ch: int, width: int, n_layers: int) -> None:
        super().__init__()
        convs = []
        ch = in_ch
        for i in range(n_layers):
            out = width * 2**i
            convs.append(nn.Conv2d(ch, out, 4, 2))
            ch = out
        self.convs = nn.ModuleList(convs)
        self.head = nn.Conv2d(ch, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(pad_reflect(x, 1)), 0.2)
        return self.head(x)


def high_pass(image: torch.Tensor, gain: float) -> torch.Tensor:
    """``image`` minus its 3x3 box mean (reflect-padded), times ``gain``: the noise and the edges,
    without the flat content that dwarfs low camera noise in the raw image."""
    mean = F.avg_pool2d(pad_reflect(image, 1), 3, stride=1)
    return (image - mean) * gain


class MultiScaleDiscriminator(nn.Module):
    """PatchGAN at ``n_scales`` scales, 3x3/2 average pooling between them (no norm layers).
    With ``high_pass`` > 0 it reads ``high_pass(x, high_pass)`` instead of ``x``
    (``ModelConfig.disc_high_pass``)."""

    def __init__(
        self, in_ch: int = 3, width: int = 64, n_layers: int = 4, n_scales: int = 3, high_pass: float = 0.0
    ) -> None:
        super().__init__()
        self.high_pass = high_pass
        self.scales = nn.ModuleList([_PatchGAN(in_ch, width, n_layers) for _ in range(n_scales)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.high_pass > 0:
            x = high_pass(x, self.high_pass)
        outputs = []
        for i, disc in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(disc(x))
        return outputs


class RepresentationDiscriminator(nn.Module):
    """Tells noisy-image codes (target 0) from clean-image codes (target 1): one score per sample."""

    def __init__(self, channels: int = 256, n_layers: int = 4) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(channels, channels, 3, 2) for _ in range(n_layers)])
        self.head = nn.Conv2d(channels, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            z = F.leaky_relu(conv(pad_reflect(z, 1)), 0.01)
        return self.head(F.adaptive_avg_pool2d(z, 1)).flatten(1)
