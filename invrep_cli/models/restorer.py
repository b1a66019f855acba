"""The inference network G_Y(E_X(x)): what restore and export run."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from invrep_cli.config import ModelConfig
from invrep_cli.level import noise_level, with_level
from invrep_cli.models.decoders import Decoder
from invrep_cli.models.encoders import ContentEncoder


class Restorer(nn.Module):
    """x in [0, 1], shape N x C x H x W, any H, W >= 1 -> restored image in [0, 1], same shape.

    Pads (reflect) to the size multiple the encoder needs and crops back, so odd sizes work.
    The networks work in [-1, 1] (the decoder ends in tanh); mapping here replaces the authors'
    per-image min-max rescaling of outputs, which changed every image's contrast.
    Gray input (C == 1) is replicated to RGB and the output averaged back to one channel.

    A conditioned restorer (``config.level_input``) is told each image's noise level: ``level``
    (N values, 0-1 scale, as ``level.noise_level`` reads them), or when None the level read from
    ``x`` itself. Tiled restore passes the whole image's level so that every tile is told the same.
    """

    def __init__(
        self, config: ModelConfig, encoder: ContentEncoder | None = None, decoder: Decoder | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.noisy_encoder = encoder or build_content_encoder(config, extra_channels=int(config.level_input))
        self.clean_decoder = decoder or build_clean_decoder(config)
        self.size_multiple = config.size_multiple

    def forward(self, x: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        gray = x.shape[1] == 1
        if not self.config.level_input:
            level = None  # a blind restorer has no input for it
        elif level is None:
            level = noise_level(x)
        if gray:
            x = x.expand(-1, 3, -1, -1)
        m = self.size_multiple
        pad_h = (m - h % m) % m
        pad_w = (m - w % m) % m
        # reflect needs pad < size; replicate covers 1-pixel images
        mode = "reflect" if (pad_h < h and pad_w < w) else "replicate"
        x = F.pad(x * 2.0 - 1.0, (0, pad_w, 0, pad_h), mode=mode)
        # every shape takes the skip features and the image; the authors' decoder ignores them
        seen = x if level is None else with_level(x, level)
        latent, features = self.noisy_encoder(seen, with_skips=True)
        y = self.clean_decoder(latent, features, x)
        y = (y[..., :h, :w] + 1.0) * 0.5
        if gray:
            y = y.mean(dim=1, keepdim=True)
        return y.clamp(0.0, 1.0)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.config)


def build_content_encoder(config: ModelConfig, extra_channels: int = 0) -> ContentEncoder:
    """E_X or E_Y; ``extra_channels``: inputs beside the image (E_X's level map)"""
    return ContentEncoder(
        config.image_channels + extra_channels, config.width, config.n_downsample, config.n_res_blocks,
        skips=config.skips,
    )


#: E_X's first convolution: the one a level map adds an input channel to
FIRST_CONV = "noisy_encoder.stem.0.conv.weight"


def conditioned_state(blind: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A blind restorer's weights as a conditioned restorer's start: the level channel's weights in
    E_X's first convolution are zero, so it restores exactly as the blind one until training
    teaches it to read the level."""
    state = dict(blind)
    weight = state[FIRST_CONV]
    state[FIRST_CONV] = torch.cat([weight, weight.new_zeros(weight.shape[0], 1, *weight.shape[2:])], 1)
    return state


def build_clean_decoder(config: ModelConfig) -> Decoder:
    return Decoder(
        config.latent_channels,
        config.image_channels,
        config.n_downsample,
        config.n_res_blocks,
        config.decoder_norm,
        skips=config.skips,
        up_kernel=config.up_kernel,
        residual=config.residual,
    )


def receptive_field(config: ModelConfig) -> int:
    """Theoretical receptive field of G_Y(E_X(.)) in input pixels (diameter).

    Walks the layer sequence keeping (field, jump): a k x k conv adds (k - 1) * jump, a stride-s
    conv multiplies jump by s, a x2 nearest upsample halves it (plus one pixel of the coarser grid).
    """
    field, jump = 1.0, 1.0

    def conv(k: int, stride: int = 1) -> None:
        nonlocal field, jump
        field += (k - 1) * jump
        jump *= stride

    conv(7)
    for _ in range(config.n_downsample):
        conv(4, 2)
    for _ in range(config.n_res_blocks * 2 * 2):  # encoder and decoder res blocks, two convs each
        conv(3)
    for level in reversed(range(config.n_downsample)):
        field += jump  # a nearest upsample can pull one more coarse pixel in at tile edges
        jump /= 2
        conv(config.up_kernel)
        if level < config.skips:
            conv(3)  # the fusing conv after a skip connection
    conv(7 if config.skips == 0 else 3)
    return int(field)
