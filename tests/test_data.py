"""Data: folder scanning, bit depths, the synthetic split and noise, crops, and bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from invrep_cli.data import (
    StepBatches,
    add_noise,
    list_images,
    load_validation,
    parse_noise,
    prepare_data,
    read_image,
    split_halves,
)
from invrep_cli.errors import DataError, UsageError
from tests.conftest import write_images


def test_list_images_recursive_and_extensions(tmp_path: Path) -> None:
    write_images(tmp_path / "a", 2)
    write_images(tmp_path / "b" / "c", 1)
    img = np.full((8, 8, 3), 100, np.uint8)
    for name in ("x.jpg", "y.JPEG", "z.tif", "w.bmp", "v.webp"):
        cv2.imwrite(str(tmp_path / name), img)
    (tmp_path / "notes.txt").write_text("not an image")
    found = list_images(tmp_path)
    assert len(found) == 8
    assert found == sorted(found)
    assert not any(p.suffix == ".txt" for p in found)


def test_read_image_bit_depths_and_gray(tmp_path: Path) -> None:
    rgb16 = np.zeros((4, 5, 3), np.uint16)
    rgb16[..., 0] = 65535  # red in RGB order, written as BGR
    rgb16[..., 2] = 257
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[..., ::-1])
    out = read_image(tmp_path / "c16.png")
    assert out.dtype == np.float32 and out.shape == (4, 5, 3)
    assert np.allclose(out[0, 0], [1.0, 0.0, 257 / 65535])  # not truncated to 8 bit
    gray16 = np.full((3, 3), 32768, np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    out = read_image(tmp_path / "g16.png")
    assert out.shape == (3, 3, 3) and np.allclose(out, 32768 / 65535)
    gray8 = np.full((3, 3), 51, np.uint8)
    cv2.imwrite(str(tmp_path / "g8.png"), gray8)
    assert np.allclose(read_image(tmp_path / "g8.png"), 0.2)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[..., 3] = 10
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    assert np.allclose(read_image(tmp_path / "a.png")[0, 0], [0, 1, 0])


def test_parse_noise() -> None:
    assert parse_noise("gaussian:25").low == 25
    spec = parse_noise("gaussian:5-50")
    assert (spec.low, spec.high) == (5, 50)
    assert parse_noise("poisson:30").kind == "poisson"
    for bad in ("gauss:25", "gaussian:", "gaussian:50-5", "poisson:0", "poisson:5-9"):
        with pytest.raises(UsageError):
            parse_noise(bad)


def test_noise_is_quantised_clipped_and_scaled() -> None:
    rng = np.random.default_rng(0)
    clean = np.full((64, 64, 3), 0.5, np.float32)
    noisy = add_noise(clean, parse_noise("gaussian:25"), rng)
    assert np.allclose(noisy * 255, np.round(noisy * 255), atol=1e-4)  # 8-bit levels
    assert abs((noisy - clean).std() * 255 - 25) < 1.5  # sigma on the 0-255 scale
    edge = add_noise(np.zeros((16, 16, 3), np.float32), parse_noise("gaussian:50"), rng)
    assert edge.min() == 0.0  # clipped like a saved file
    blind = [add_noise(clean, parse_noise("gaussian:5-50"), np.random.default_rng(i)) for i in range(8)]
    sigmas = [(b - clean).std() * 255 for b in blind]
    assert min(sigmas) < max(sigmas) - 5 and 4 < min(sigmas) and max(sigmas) < 51
    poisson = add_noise(clean, parse_noise("poisson:10"), rng)
    assert abs(poisson.mean() - 0.5) < 0.02 and poisson.std() > 0.1


def test_split_halves_disjoint_and_deterministic(tmp_path: Path) -> None:
    paths = write_images(tmp_path, 9)
    a1, b1 = split_halves(list(reversed(paths)), seed=3)
    a2, b2 = split_halves(paths, seed=3)
    assert (a1, b1) == (a2, b2)
    assert not set(a1) & set(b1) and len(a1) + len(b1) == 9
    assert split_halves(paths, seed=4) != (a1, b1)


def test_dataset_deterministic_by_index(tmp_path: Path) -> None:
    write_images(tmp_path / "clean", 6, size=(40, 36))
    data = prepare_data(
        clean_dir=str(tmp_path / "clean"), noisy_dir=None, synthetic="gaussian:25", crop_size=32, seed=0
    )
    assert data.noisy_count == 3 and data.clean_count == 3
    x1, y1 = data.dataset[5]
    x2, y2 = data.dataset[5]
    assert x1.shape == (3, 32, 32) and y1.shape == (3, 32, 32)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.min() >= -1 and x1.max() <= 1
    assert not torch.equal(data.dataset[6][1], y1)


def test_gray_16bit_training_images(tmp_path: Path) -> None:
    folder = tmp_path / "gray16"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 65536, (20, 24), dtype=np.uint16))
    data = prepare_data(clean_dir=str(folder), noisy_dir=None, synthetic="poisson:30", crop_size=16, seed=1)
    x, y = data.dataset[0]
    assert x.shape == y.shape == (3, 16, 16)
    assert torch.equal(y[0], y[1]) and torch.equal(y[1], y[2])  # gray replicated to RGB
    assert len(torch.unique(y)) > 200  # 16-bit levels kept in the clean domain
    assert torch.allclose((x + 1) * 127.5, ((x + 1) * 127.5).round(), atol=1e-3)  # noisy domain 8-bit


def test_step_batches_shard_ranks() -> None:
    r0 = list(StepBatches(2, 4, batch_size=2, rank=0, world_size=2))
    r1 = list(StepBatches(2, 4, batch_size=2, rank=1, world_size=2))
    assert r0 == [[8, 9], [12, 13]] and r1 == [[10, 11], [14, 15]]


def test_small_and_corrupt_images_skipped_with_warnings(tmp_path: Path) -> None:
    write_images(tmp_path / "noisy", 2, size=(32, 32))
    write_images(tmp_path / "noisy" / "small", 1, size=(16, 16))
    (tmp_path / "noisy" / "broken.png").write_bytes(b"\x89PNG garbage")
    write_images(tmp_path / "clean", 2)
    warnings: list[str] = []
    data = prepare_data(
        clean_dir=str(tmp_path / "clean"),
        noisy_dir=str(tmp_path / "noisy"),
        synthetic=None,
        crop_size=32,
        seed=0,
        warn=warnings.append,
    )
    assert data.noisy_count == 2
    assert any("broken.png" in w for w in warnings)
    assert any("small" in w and "smaller than" in w for w in warnings)


def test_bad_folders(tmp_path: Path) -> None:
    write_images(tmp_path / "clean", 2)
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    kw = dict(clean_dir=str(tmp_path / "clean"), synthetic=None, crop_size=16, seed=0)
    with pytest.raises(DataError, match="does not exist"):
        prepare_data(noisy_dir=str(tmp_path / "missing"), **kw)
    with pytest.raises(DataError, match="is empty"):
        prepare_data(noisy_dir=str(tmp_path / "empty"), **kw)
    with pytest.raises(DataError, match="no image files"):
        prepare_data(noisy_dir=str(tmp_path / "text"), **kw)
    with pytest.raises(DataError, match="at least 64x64"):
        prepare_data(noisy_dir=str(tmp_path / "clean"), **{**kw, "crop_size": 64})
    with pytest.raises(UsageError, match="not both"):
        prepare_data(noisy_dir=str(tmp_path / "clean"), **{**kw, "synthetic": "gaussian:25"})


def test_validation_pairs_and_synthetic(tmp_path: Path) -> None:
    write_images(tmp_path / "vc" / "sub", 2, seed=1)
    write_images(tmp_path / "vn" / "sub", 2, seed=2)
    pairs = load_validation(str(tmp_path / "vn"), str(tmp_path / "vc"), None, 0)
    assert [p.name for p in pairs] == ["sub/img_000", "sub/img_001"]
    assert not np.array_equal(pairs[0].noisy, pairs[0].clean)
    synth1 = load_validation(None, str(tmp_path / "vc"), parse_noise("gaussian:25"), 0)
    synth2 = load_validation(None, str(tmp_path / "vc"), parse_noise("gaussian:25"), 0)
    assert np.array_equal(synth1[1].noisy, synth2[1].noisy)  # fixed seed
    assert load_validation(None, None, parse_noise("gaussian:25"), 0) == []
    with pytest.raises(UsageError):
        load_validation(None, str(tmp_path / "vc"), None, 0)


def test_read_image_goes_through_imageio_exif_orientation_and_the_pixel_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training reads as restore does: a photo stored sideways with EXIF orientation 6 comes out
    upright, and the one pixel limit refuses a file over it with imageio's message."""
    from PIL import Image

    from invrep_cli import imageio
    from invrep_cli.errors import ImageError

    stored = np.zeros((20, 30, 3), np.uint8)
    stored[:, :5] = 255  # a white band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(stored).save(tmp_path / "sideways.png", exif=exif)
    out = read_image(tmp_path / "sideways.png")
    assert out.shape == (30, 20, 3)  # upright: the stored width became the height
    assert np.allclose(out[:5].mean(), 1.0) and out[-5:].mean() < 0.1  # the band is now on top
    monkeypatch.setattr(imageio, "MAX_PIXELS", 100)
    with pytest.raises(ImageError, match="decompression-bomb limit"):
        read_image(tmp_path / "sideways.png")
