"""Loss functions, and which networks each training step and each loss term reaches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from invrep_cli.config import LossWeights, ModelConfig, TrainConfig
from invrep_cli.losses import (
    background_consistency,
    gaussian_blur,
    l1,
    latent_penalty,
    lsgan,
    semantic_consistency,
    weighted_total,
)
from invrep_cli.objectives import lir_generator_objective
from invrep_cli.training import LIRModel
from invrep_cli.vgg import load_vgg_features
from tests.test_vgg import fake_vgg_state

GENERATORS = ("noisy_encoder", "clean_encoder", "noise_encoder", "noisy_decoder", "clean_decoder")
DISCRIMINATORS = ("noisy_discriminator", "clean_discriminator", "representation_discriminator")


def test_lsgan_sums_scales() -> None:
    assert lsgan(torch.zeros(2, 1, 4, 4), 1.0).item() == pytest.approx(1.0)
    assert lsgan([torch.zeros(2, 1, 4, 4), torch.full((2, 1, 2, 2), 0.5)], 1.0).item() == pytest.approx(1.25)


def test_simple_terms() -> None:
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert l1(a, b).item() == pytest.approx(0.5)
    assert latent_penalty(torch.full((2, 8, 2, 2), 2.0)).item() == pytest.approx(4.0)


def test_gaussian_blur() -> None:
    torch.manual_seed(0)
    flat = torch.full((1, 3, 64, 64), 0.3)
    assert torch.allclose(gaussian_blur(flat, 5.0), flat, atol=1e-6)  # kernel sums to one
    noise = torch.randn(1, 3, 64, 64)
    assert gaussian_blur(noise, 5.0).std() < 0.1 * noise.std()
    # small images truncate the kernel instead of failing on reflection padding
    small = torch.randn(1, 3, 16, 16)
    assert gaussian_blur(small, 15.0).shape == small.shape


def test_background_and_semantic() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert background_consistency(x, x).item() == 0.0
    # fine noise barely moves the blurred images; a brightness shift does
    assert background_consistency(x + 0.2 * torch.randn_like(x), x) < background_consistency(x + 0.2, x)
    f = torch.randn(2, 8, 4, 4)
    # instance normalisation: per-channel scale and offset of the features do not count
    assert semantic_consistency(3 * f + 1, f).item() == pytest.approx(0.0, abs=1e-6)
    assert semantic_consistency(torch.randn(2, 8, 4, 4), f).item() > 0.1


def test_weighted_total() -> None:
    terms = {"rec_noisy": torch.tensor(1.0), "latent": torch.tensor(2.0), "semantic": torch.tensor(5.0)}
    total = weighted_total(terms, LossWeights(self_rec=10.0, latent=0.5, semantic=0.0))
    assert total.item() == pytest.approx(11.0)
    with pytest.raises(KeyError):
        weighted_total({"nonsense": torch.tensor(1.0)}, LossWeights())


def make_model(tmp_path: Path, config: ModelConfig, vgg: bool = False) -> LIRModel:
    """The LIR model alone, LIR from step 0: no folders, no run directory."""
    features = None
    if vgg:
        torch.save(fake_vgg_state(), tmp_path / "vgg.pth")
        features = load_vgg_features(tmp_path / "vgg.pth")
    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"),
        clean_dir="unused",
        model=config,
        losses=LossWeights() if vgg else LossWeights(semantic=0.0),
    )
    return LIRModel(config, cfg, warmup_steps=0, vgg=features)


def _snapshot(trainer: LIRModel) -> dict[str, list[torch.Tensor]]:
    return {name: [p.detach().clone() for p in m.parameters()] for name, m in trainer.nets.items()}


def _changed(before: dict[str, list[torch.Tensor]], trainer: LIRModel) -> set[str]:
    return {
        name
        for name, m in trainer.nets.items()
        if any(not torch.equal(a, p) for a, p in zip(before[name], m.parameters(), strict=True))
    }


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 16, 16, generator=g) * 2 - 1, torch.rand(2, 3, 16, 16, generator=g) * 2 - 1


def test_each_step_updates_only_its_networks(tmp_path: Path, tiny_config: ModelConfig) -> None:
    trainer = make_model(tmp_path, tiny_config)
    x, y = _batch()
    codes = trainer.encode_for_discriminators(x, y)

    before = _snapshot(trainer)
    d_repr = trainer.representation_step(codes)
    assert torch.isfinite(d_repr)
    assert _changed(before, trainer) == {"representation_discriminator"}

    before = _snapshot(trainer)
    d_terms = trainer.image_discriminator_step(x, y, codes)
    assert all(torch.isfinite(v) for v in d_terms.values())
    assert _changed(before, trainer) == {"noisy_discriminator", "clean_discriminator"}

    before = _snapshot(trainer)
    g_terms, _ = trainer.generator_step(x, y)
    assert all(torch.isfinite(v) for v in g_terms.values()), g_terms
    assert _changed(before, trainer) == set(GENERATORS)
    # discriminators are trainable again after the generator step
    assert all(p.requires_grad for name in DISCRIMINATORS for p in getattr(trainer.nets, name).parameters())


# loss term -> the generator networks its gradient must reach (and no others)
EXPECTED_REACH = {
    "adv_noisy": {"clean_encoder", "noise_encoder", "noisy_decoder"},
    "adv_clean": {"noisy_encoder", "clean_decoder"},
    "repr_adv": {"noisy_encoder", "clean_encoder"},
    "rec_noisy": {"noisy_encoder", "noise_encoder", "noisy_decoder"},
    "rec_clean": {"clean_encoder", "clean_decoder"},
    "cycle_noisy": set(GENERATORS),
    "cycle_clean": set(GENERATORS),
    "latent": set(GENERATORS),
    "background": set(GENERATORS),
    "semantic": set(GENERATORS),
}


def test_each_term_reaches_the_right_networks(tmp_path: Path, tiny_config: ModelConfig) -> None:
    trainer = make_model(tmp_path, tiny_config, vgg=True)
    assert trainer.vgg is not None
    for name in DISCRIMINATORS:
        getattr(trainer.nets, name).requires_grad_(False)
    terms, _ = lir_generator_objective(trainer.forward, trainer.nets, *_batch(1), vgg=trainer.vgg)
    assert set(terms) == set(EXPECTED_REACH)
    for term, value in terms.items():
        assert torch.isfinite(value), term
        reached = set()
        for name in GENERATORS:
            params = list(getattr(trainer.nets, name).parameters())
            grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
            if any(g is not None and g.abs().sum() > 0 for g in grads):
                reached.add(name)
        assert reached == EXPECTED_REACH[term], term
    assert not any(p.requires_grad for p in trainer.vgg.parameters())
