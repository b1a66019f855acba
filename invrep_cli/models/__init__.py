"""The eight LIR networks. ``build_models(cfg)`` returns them in one small dataclass."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from invrep_cli.config import ModelConfig
from invrep_cli.models.decoders import Decoder
from invrep_cli.models.discriminators import MultiScaleDiscriminator, RepresentationDiscriminator
from invrep_cli.models.encoders import ContentEncoder, NoiseEncoder
from invrep_cli.models.restorer import (
    Restorer,
    build_clean_decoder,
    build_content_encoder,
    receptive_field,
)

__all__ = [
    "ContentEncoder",
    "Decoder",
    "LIRNetworks",
    "MultiScaleDiscriminator",
    "NoiseEncoder",
    "RepresentationDiscriminator",
    "Restorer",
    "build_models",
    "count_parameters",
    "receptive_field",
]


@dataclass
class LIRNetworks:
    """E_X, E_Y, E_X^N, G_X, G_Y, D_X, D_Y, D_R under names that say what they are."""

    noisy_encoder: ContentEncoder  # E_X
    clean_encoder: ContentEncoder  # E_Y (separate weights)
    noise_encoder: NoiseEncoder  # E_X^N
    noisy_decoder: Decoder  # G_X, input = content code (+) noise code
    clean_decoder: Decoder  # G_Y
    noisy_discriminator: MultiScaleDiscriminator  # D_X
    clean_discriminator: MultiScaleDiscriminator  # D_Y
    representation_discriminator: RepresentationDiscriminator  # D_R
    config: ModelConfig

    NETWORKS = (
        "noisy_encoder",
        "clean_encoder",
        "noise_encoder",
        "noisy_decoder",
        "clean_decoder",
        "noisy_discriminator",
        "clean_discriminator",
        "representation_discriminator",
    )
    GENERATORS = ("noisy_encoder", "clean_encoder", "noise_encoder", "noisy_decoder", "clean_decoder")
    IMAGE_DISCRIMINATORS = ("noisy_discriminator", "clean_discriminator")

    def items(self) -> list[tuple[str, nn.Module]]:
        return [(name, getattr(self, name)) for name in self.NETWORKS]

    def generator_parameters(self) -> list[nn.Parameter]:
        return [p for name in self.GENERATORS for p in getattr(self, name).parameters()]

    def image_discriminator_parameters(self) -> list[nn.Parameter]:
        return [p for name in self.IMAGE_DISCRIMINATORS for p in getattr(self, name).parameters()]

    def restorer(self) -> Restorer:
        """G_Y(E_X(.)) sharing these modules' weights."""
        return Restorer(self.config, self.noisy_encoder, self.clean_decoder)


def _init_generator(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _init_discriminator(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_models(config: ModelConfig) -> LIRNetworks:
    """All eight networks, initialised as the authors do (Kaiming for generators, N(0, 0.02) for
    discriminators)."""
    c, lat = config.image_channels, config.latent_channels
    disc_shape = (c, config.disc_width, config.disc_layers, config.disc_scales)
    clean_gain = config.disc_high_pass if config.clean_disc_high_pass is None else config.clean_disc_high_pass
    nets = LIRNetworks(
        noisy_encoder=build_content_encoder(config, extra_channels=int(config.level_input)),
        clean_encoder=build_content_encoder(config),
        noise_encoder=NoiseEncoder(c, config.width, config.n_downsample),
        noisy_decoder=Decoder(
            2 * lat, c, config.n_downsample,
            config.n_res_blocks if config.gx_res_blocks is None else config.gx_res_blocks,
            config.decoder_norm, up_kernel=config.gx_up_kernel,
        ),  # fmt: skip
        clean_decoder=build_clean_decoder(config),
        noisy_discriminator=MultiScaleDiscriminator(*disc_shape, high_pass=config.disc_high_pass),
        clean_discriminator=MultiScaleDiscriminator(*disc_shape, high_pass=clean_gain),
        representation_discriminator=RepresentationDiscriminator(lat),
        config=config,
    )
    for name, module in nets.items():
        module.apply(_init_discriminator if "discriminator" in name else _init_generator)
    return nets


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_restorer(config: ModelConfig) -> Restorer:
    restorer = Restorer(config)
    restorer.apply(_init_generator)
    return restorer


def to_device(nets: LIRNetworks, device: torch.device) -> LIRNetworks:
    for _, module in nets.items():
        module.to(device)
    return nets
