"""Shared fixtures. Tests are CPU-sized: tiny widths, 32x32 images, a few steps, no network."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from invrep_cli.config import ModelConfig
from tests.localserver import server, weights_bytes  # noqa: F401  (fixtures for the download tests)

# INVREP_TEST_THREADS=1 keeps parallel test runs from fighting over a 2-core machine
torch.set_num_threads(int(os.environ.get("INVREP_TEST_THREADS", "2")))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_shared = pytest.mark.skip(reason=f"needs {SHARED_DATA}")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "shared_data" in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(skip_shared)


@pytest.fixture(params=["authors", "unet"])
def tiny_config(request: pytest.FixtureRequest) -> ModelConfig:
    """Every network at width 4 with one residual block: shapes as the real thing, tiny cost.
    Both restorer shapes: the authors' (every pixel through the H/4 bottleneck) and invrep's
    (skips at full and half resolution, 3x3 upsampling convs, residual output)."""
    tiny = ModelConfig(name="tiny", width=4, n_res_blocks=1, disc_width=4, disc_scales=2, disc_layers=2)
    if request.param == "unet":
        return dataclasses.replace(tiny, name="tiny-unet", skips=2, up_kernel=3, residual=True)
    return tiny


@pytest.fixture
def weights(tmp_path: Path, tiny_config: ModelConfig) -> Path:
    """A tiny restorer file (seeded random weights) of each ``tiny_config`` shape."""
    from invrep_cli.checkpoint import save_restorer
    from invrep_cli.models import build_restorer

    torch.manual_seed(0)
    return save_restorer(build_restorer(tiny_config), tmp_path / "w.safetensors")


@pytest.fixture
def onnx_file(weights: Path, tmp_path: Path) -> Path:
    """``weights`` exported to ONNX, checked against PyTorch at one odd size."""
    from invrep_cli.export import export_onnx

    out = tmp_path / "m.onnx"
    export_onnx(weights, out, check_sizes=((1, 3, 19, 21),), threads=1)
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def write_images(
    folder: Path, count: int, size: tuple[int, int] = (32, 32), seed: int = 0, mode: str = "RGB"
) -> list[Path]:
    """Smooth random images (so denoising has something to find) saved as PNG."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    for i in range(count):
        channels = [np.sin(6 * (rng.random() * xx + rng.random() * yy) + rng.random() * 6) for _ in range(3)]
        img = ((np.stack(channels, -1) + 1) * 127.5).astype(np.uint8)
        pil = Image.fromarray(img)
        if mode != "RGB":
            pil = pil.convert(mode)
        path = folder / f"img_{i:03d}.png"
        pil.save(path)
        paths.append(path)
    return paths
