"""The conditioned restorer (``--level-input``, issue 17 item 2): the level it is told, how it starts
from a blind model, and that training, tiled restore and export treat it as they must."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from invrep_cli.backends import TorchBackend
from invrep_cli.checkpoint import load_restorer, save_restorer
from invrep_cli.cli import app
from invrep_cli.config import LossWeights, ModelConfig, TrainConfig, model_preset
from invrep_cli.data import parse_noise
from invrep_cli.errors import UsageError
from invrep_cli.export import export_onnx
from invrep_cli.level import LEVEL_UNIT, image_level, noise_level
from invrep_cli.models import build_restorer
from invrep_cli.models.restorer import FIRST_CONV, conditioned_state
from invrep_cli.noise import NoiseModel
from invrep_cli.restore import restore_pixels
from invrep_cli.training import LIRModel
from tests.conftest import write_images
from tests.test_train import _noisy_photos

runner = CliRunner()
TINY_UNET = model_preset("lir-lite-unet", width=4, disc_width=4, n_res_blocks=1, disc_scales=2)


def _reading_level(config: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """A conditioned tiny restorer whose level weights are not zero, so the level changes its output."""
    torch.manual_seed(seed)
    restorer = build_restorer(dataclasses.replace(config, level_input=True)).eval()
    with torch.no_grad():
        restorer.noisy_encoder.stem[0].conv.weight[:, -1].normal_(0.0, 0.5)
    return restorer


def test_noise_level_reads_white_noise_and_ignores_smooth_images() -> None:
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0.2, 0.8, 96).view(1, 1, 1, 96).expand(3, 3, 96, 96)
    sigmas = torch.tensor([0.0, 10 / 255, 50 / 255])
    noisy = ramp + torch.randn(3, 3, 96, 96, generator=g) * sigmas.view(3, 1, 1, 1)
    levels = noise_level(noisy)
    assert levels[0] < 1e-4  # a gradient is not noise
    assert levels[1:] == pytest.approx(sigmas[1:], rel=0.08)
    assert noise_level(torch.rand(2, 1, 1, 5)).tolist() == [0.0, 0.0]  # too small to read


def test_image_level_is_scale_free_and_reads_the_centre(rng: np.random.Generator) -> None:
    clean = np.full((40, 60, 3), 0.5, np.float32)
    noisy = np.clip(clean + rng.normal(0, 20 / 255, clean.shape), 0, 1).astype(np.float32)
    as_uint8 = np.rint(noisy * 255).astype(np.uint8)
    assert image_level(noisy) == pytest.approx(20 / 255, rel=0.15)
    assert image_level(as_uint8) == pytest.approx(image_level(noisy), rel=0.05)
    assert image_level(as_uint8[..., 0]) == pytest.approx(20 / 255, rel=0.2)  # gray: H x W


def test_a_conditioned_restorer_starts_as_the_blind_one(tiny_config: ModelConfig) -> None:
    torch.manual_seed(1)
    blind = build_restorer(tiny_config).eval()
    conditioned = build_restorer(dataclasses.replace(tiny_config, level_input=True)).eval()
    conditioned.load_state_dict(conditioned_state(blind.state_dict()))
    assert conditioned.state_dict()[FIRST_CONV].shape[1] == blind.state_dict()[FIRST_CONV].shape[1] + 1
    x = torch.rand(2, 3, 21, 30)
    with torch.no_grad():
        assert torch.equal(conditioned(x), blind(x))
        assert torch.equal(conditioned(x, torch.tensor([0.0, 0.3])), blind(x))
        # once it reads the level, the level changes what it does; the default is the image's own
        reading = _reading_level(tiny_config)
        assert not torch.allclose(reading(x, torch.zeros(2)), reading(x, torch.full((2,), LEVEL_UNIT)))
        assert torch.equal(reading(x), reading(x, noise_level(x)))


def test_tiled_restore_tells_every_tile_the_whole_images_level(tmp_path: Path, rng: np.random.Generator) -> None:
    """Tiles of one image must agree: each is told the level read on the whole image, so a tiled
    restore equals the whole image restored at once (and differs from telling each tile its own)."""
    weights = save_restorer(_reading_level(TINY_UNET), tmp_path / "cond.safetensors")
    backend = TorchBackend(weights, device="cpu", precision="fp32")
    assert backend.level_input
    pixels = rng.random((70, 90, 3), dtype=np.float32)
    pixels[:, 45:] *= 0.2  # the right half is calm: a tile there reads a lower level on its own
    whole = restore_pixels(pixels, backend, tile=0)
    tiled = restore_pixels(pixels, backend, tile=32, overlap=8)
    assert np.abs(tiled - whole).max() < 1e-4
    with torch.no_grad():
        x = torch.from_numpy(pixels.transpose(2, 0, 1)[None].copy())
        by_hand = backend.model_fp32(x, torch.tensor([image_level(pixels)]))[0].numpy().transpose(1, 2, 0)
    assert np.abs(whole - by_hand).max() < 1e-5


def test_stage1_step_feeds_the_estimated_level(tiny_config: ModelConfig) -> None:
    """train_step on a tensor batch: a conditioned E_X is trained with the level of each crop it sees."""
    config = dataclasses.replace(tiny_config, level_input=True)
    cfg = TrainConfig(
        out_dir="u", clean_dir="u", synthetic="gaussian:5-50", model=config, losses=LossWeights(semantic=0.0)
    )
    model = LIRModel(config, cfg, warmup_steps=2, noise_model=NoiseModel(spec=parse_noise("gaussian:5-50")))
    seen: list[torch.Tensor] = []
    model.nets.noisy_encoder.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    g = torch.Generator().manual_seed(2)
    x, y = (torch.rand(4, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2))
    before = model.nets.noisy_encoder.stem[0].conv.weight[:, -1].clone()
    terms = model.train_step((x, y))
    assert torch.isfinite(terms["warmup_l1"])
    (given,) = seen
    assert given.shape[1] == 4
    expected = noise_level((model.visuals["x"] + 1) * 0.5) / LEVEL_UNIT
    assert torch.allclose(given[:, 3].mean((1, 2)), expected, atol=1e-5)
    assert not torch.equal(model.nets.noisy_encoder.stem[0].conv.weight[:, -1], before)  # it learns to read it


@pytest.mark.parametrize(
    "shape", [["--width", "4", "--res-blocks", "1", "--disc-scales", "2"], []], ids=["same-shape", "files-shape"]
)
def test_train_level_input_from_a_blind_file(tmp_path: Path, shape: list[str]) -> None:
    """--level-input from a blind restorer file, whether the asked shape is the file's or not."""
    clean_dir = tmp_path / "clean"
    write_images(clean_dir, 6, size=(40, 40))
    blind = save_restorer(build_restorer(TINY_UNET), tmp_path / "blind.safetensors")
    _noisy_photos(tmp_path / "noisy", 2, sigma=0.06)
    out = tmp_path / "run"
    args = ["train", "--noisy", str(tmp_path / "noisy"), "--clean", str(clean_dir), "--out", str(out),
            "--init-weights", str(blind), "--level-input", "--steps", "2", "--warmup-steps", "2",
            "--batch-size", "2", "--crop-size", "32", "--workers", "0", "--device", "cpu", "--report-images", "0",
            "--quiet", *shape]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    restorer, _ = load_restorer(out / "restorer.safetensors")
    assert restorer.config.level_input
    with safe_open(str(out / "restorer.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["model_config"])["level_input"] is True
        assert f.get_tensor(FIRST_CONV).shape[1] == 4


def test_export_refuses_a_conditioned_restorer(tmp_path: Path) -> None:
    weights = save_restorer(_reading_level(TINY_UNET), tmp_path / "cond.safetensors")
    with pytest.raises(UsageError, match="conditioned restorer.*--backend torch"):
        export_onnx(weights, tmp_path / "cond.onnx")
