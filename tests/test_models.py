"""Shapes of every LIR network at a tiny width, and the restorer on odd sizes and gray input."""

from __future__ import annotations

import pytest
import torch

from invrep_cli.config import MODEL_PRESETS, ModelConfig
from invrep_cli.models import build_models, build_restorer, count_parameters


def test_every_network_shape(tiny_config: ModelConfig) -> None:
    torch.manual_seed(0)
    nets = build_models(tiny_config)
    lat = tiny_config.latent_channels
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = nets.noisy_encoder(x)
    assert z.shape == (2, lat, 8, 8)
    assert nets.clean_encoder(x).shape == (2, lat, 8, 8)
    n = nets.noise_encoder(x)
    assert n.shape == (2, lat, 8, 8)  # a spatial map, not a vector
    if tiny_config.skips:
        z2, features = nets.noisy_encoder(x, with_skips=True)
        assert torch.equal(z2, z)
        assert [f.shape[-1] for f in features] == [32, 16][: tiny_config.skips]
        y = nets.clean_decoder(z, features, x)
        with pytest.raises(ValueError, match="skip"):
            nets.clean_decoder(z)
    else:
        y = nets.clean_decoder(z)
        assert y.min() >= -1 and y.max() <= 1  # tanh
    assert y.shape == (2, 3, 32, 32)
    assert nets.noisy_decoder(torch.cat([z, n], 1)).shape == (2, 3, 32, 32)
    outs = nets.noisy_discriminator(x)
    assert len(outs) == tiny_config.disc_scales
    assert outs[0].shape == (2, 1, 8, 8) and outs[1].shape == (2, 1, 4, 4)
    assert [o.shape for o in nets.clean_discriminator(x)] == [o.shape for o in outs]
    assert nets.representation_discriminator(z).shape == (2, 1)


@pytest.mark.parametrize("size", [(17, 23), (1, 5), (32, 31)])
def test_restorer_odd_sizes(tiny_config: ModelConfig, size: tuple[int, int]) -> None:
    restorer = build_restorer(tiny_config).eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        out = restorer(x)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1


def test_restorer_gray(tiny_config: ModelConfig) -> None:
    restorer = build_restorer(tiny_config).eval()
    with torch.no_grad():
        out = restorer(torch.rand(2, 1, 19, 21))
    assert out.shape == (2, 1, 19, 21)


def test_lir_restorer_parameter_count() -> None:
    nets_cfg = MODEL_PRESETS["lir"]
    restorer = build_restorer(nets_cfg)
    assert abs(count_parameters(restorer) - 11.15e6) <= 0.01e6


def test_skip_restorer_starts_near_identity_and_costs_no_more() -> None:
    """The residual output means an untrained G_Y(E_X(x)) passes the image through with a small
    correction, and the full-resolution path costs no more parameters than lir-lite's."""
    unet = build_restorer(MODEL_PRESETS["lir-lite-unet"]).eval()
    lite = build_restorer(MODEL_PRESETS["lir-lite"]).eval()
    assert count_parameters(unet) <= count_parameters(lite)
    x = torch.rand(1, 3, 24, 24)
    for module in unet.modules():  # zero the last conv: the output must then be the input exactly
        if module is unet.clean_decoder.to_image:
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
    with torch.no_grad():
        assert torch.allclose(unet(x), x, atol=1e-6)
