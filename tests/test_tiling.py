"""Tiling: pure round trips, plan invariants, and tiled restorer output equal to whole-image output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from invrep_cli.backends import theoretical_margin
from invrep_cli.config import ModelConfig
from invrep_cli.models import build_restorer, receptive_field
from invrep_cli.tiling import blend_window, pad_to_multiple, plan_tiles, tiled_apply


def _identity(batch: np.ndarray) -> np.ndarray:
    return batch.copy()


@pytest.mark.parametrize("size", [(37, 53), (32, 32), (5, 3), (64, 17)])
@pytest.mark.parametrize("tile", [0, 8, 16, 24])
@pytest.mark.parametrize("multiple", [1, 4])
def test_identity_round_trip(size: tuple[int, int], tile: int, multiple: int, rng: np.random.Generator) -> None:
    image = rng.random((*size, 3), dtype=np.float32)
    no_overlap = tiled_apply(image, _identity, plan_tiles(*size, tile, 0, 4, multiple), batch_size=3)
    assert np.array_equal(no_overlap, image)  # weights are all 1: bit-exact
    blended = tiled_apply(image, _identity, plan_tiles(*size, tile, 8, 4, multiple), batch_size=3)
    assert blended.shape == image.shape
    assert np.abs(blended - image).max() <= 4e-7  # a weighted mean of equal values: one rounding


def test_plan_invariants() -> None:
    plan = plan_tiles(37, 53, 16, overlap=8, margin=12, multiple=4)
    assert (plan.padded_height, plan.padded_width) == (40, 56)
    covered = np.zeros((40, 56), dtype=int)
    for t in plan.tiles:
        # the network's input is aligned to the stride grid and clipped at the padded border
        for v in (t.in_y0, t.in_y1, t.in_x0, t.in_x1):
            assert v % 4 == 0
        assert 0 <= t.in_y0 <= t.out_y0 < t.out_y1 <= t.in_y1 <= 40
        assert 0 <= t.in_x0 <= t.out_x0 < t.out_x1 <= t.in_x1 <= 56
        # full context except where the padded border cuts it
        assert t.out_y0 - t.in_y0 >= 12 or t.in_y0 == 0
        assert t.in_y1 - t.out_y1 >= 12 or t.in_y1 == 40
        covered[t.out_y0 : t.out_y1, t.out_x0 : t.out_x1] += 1
    assert covered.min() >= 1 and covered.max() == 4  # corners of four tiles overlap
    assert len(plan_tiles(37, 53, 0, 8, 12, 4).tiles) == 1
    assert len(plan_tiles(37, 53, 500, 8, 12, 4).tiles) == 1


def test_blend_windows_sum_to_one_across_a_seam() -> None:
    plan = plan_tiles(1, 64, 32, overlap=8, margin=0, multiple=1)
    total = np.zeros(64, dtype=np.float32)
    for t in plan.tiles:
        win = blend_window(t)
        assert win.min() > 0
        total[t.out_x0 : t.out_x1] += win[0]
    assert np.allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize("size", [(37, 53), (9, 2), (1, 1), (6, 6)])
def test_padding_matches_restorer(size: tuple[int, int], rng: np.random.Generator) -> None:
    image = rng.random((*size, 3), dtype=np.float32)
    h, w = size
    pad_h, pad_w = (4 - h % 4) % 4, (4 - w % 4) % 4
    mode = "reflect" if (pad_h < h and pad_w < w) else "replicate"
    ref = F.pad(torch.from_numpy(image).permute(2, 0, 1)[None], (0, pad_w, 0, pad_h), mode=mode)[0]
    assert np.array_equal(pad_to_multiple(image, 4), ref.permute(1, 2, 0).numpy())


@pytest.fixture
def restorer_fn(tiny_config: ModelConfig):  # noqa: ANN201
    torch.manual_seed(0)
    model = build_restorer(tiny_config).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()

    margin = theoretical_margin(receptive_field(tiny_config), tiny_config.size_multiple)
    return run, margin


@pytest.mark.parametrize("size", [(37, 53), (70, 45)])
@pytest.mark.parametrize("tile", [16, 24, 32])
@pytest.mark.parametrize("overlap", [0, 8])
def test_tiled_restorer_equals_whole_image(
    restorer_fn, size: tuple[int, int], tile: int, overlap: int, rng: np.random.Generator  # noqa: ANN001
) -> None:
    run, margin = restorer_fn
    image = rng.random((*size, 3), dtype=np.float32)
    whole = run(image.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
    plan = plan_tiles(*size, tile, overlap, margin, 4)
    assert len(plan.tiles) > 1
    tiled = tiled_apply(image, run, plan, batch_size=2)
    assert np.abs(tiled - whole).max() < 1 / 255
    assert np.abs(tiled - whole).max() < 1e-4  # in fact equal up to float rounding


def test_gray_tiled_equals_whole_image(restorer_fn, rng: np.random.Generator) -> None:  # noqa: ANN001
    run, margin = restorer_fn
    image = rng.random((41, 30, 1), dtype=np.float32)
    whole = run(image.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
    tiled = tiled_apply(image, run, plan_tiles(41, 30, 16, 8, margin, 4))
    assert tiled.shape == (41, 30, 1) and np.abs(tiled - whole).max() < 1e-4


def test_too_little_context_shows(restorer_fn, rng: np.random.Generator) -> None:  # noqa: ANN001
    """The equality test above can fail: without enough context the tiles differ."""
    run, _ = restorer_fn
    image = rng.random((48, 48, 3), dtype=np.float32)
    whole = run(image.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
    tiled = tiled_apply(image, run, plan_tiles(48, 48, 16, 0, 0, 4))
    assert np.abs(tiled - whole).max() > 1 / 255


def test_unaligned_tiles_would_break_exactness(restorer_fn, rng: np.random.Generator) -> None:  # noqa: ANN001
    """Why tile inputs are aligned to the size multiple: an odd origin changes the stride grid."""
    run, margin = restorer_fn
    image = np.ascontiguousarray(rng.random((3, 132, 16), dtype=np.float32))
    whole = run(image[None])[0]
    rows = slice(60, 68)  # far more than ``margin`` from both crop borders
    for start, equal in ((4, True), (1, False)):
        crop = run(np.ascontiguousarray(image[:, start : start + 120])[None])[0]
        diff = np.abs(crop[:, rows.start - start : rows.stop - start] - whole[:, rows]).max()
        assert (diff < 1e-4) == equal, (start, diff)
