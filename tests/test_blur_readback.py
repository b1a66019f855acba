"""A white folder's blur read back on the clean folder (blur_readback.py): texture that the
estimator reads as correlated noise is taken out; blurred and JPEG folders are left as read."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from invrep_cli.blur_readback import readback_curve, unblur_white
from invrep_cli.noise import ImageNoise, NoiseModel, blurred, fit_noise_model, sample_fitted

EYE = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
WHITE = ImageNoise((0.0,) * 3, (0.02**2,) * 3, 0.0, EYE)


def photo(seed: int, texture: float, size: int = 256) -> np.ndarray:
    """A gray ramp with fine correlated texture of std ``texture`` (a photo's grain of detail: what
    the estimator's flattest blocks still hold), as three equal channels."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    fine = blurred(torch.randn(1, 1, size, size, generator=gen), torch.tensor([1.0]))[0, 0].numpy()
    img = np.clip(0.1 + 0.8 * (0.6 * xx + 0.4 * yy) + texture * fine, 0.0, 1.0)
    return np.repeat(img[:, :, None], 3, axis=2)


def noisy(img: np.ndarray, noise: ImageNoise, seed: int) -> np.ndarray:
    t = torch.from_numpy(img.transpose(2, 0, 1)[None].copy()).float()
    out = sample_fitted(t, [noise], torch.Generator().manual_seed(seed))
    return np.round(np.clip(out[0].numpy().transpose(1, 2, 0), 0, 1) * 255) / 255


def test_texture_read_as_blur_is_taken_out_of_a_white_folder() -> None:
    model = fit_noise_model([noisy(photo(s, 0.01), WHITE, s) for s in range(4)])
    before = [f.blur for f in model.fitted]
    assert min(before) > 0.4  # the texture is read as blur: the truth is 0
    fixed, note = unblur_white(model, [photo(100 + s, 0.01) for s in range(4)])
    after = {f.blur for f in fixed.fitted}
    assert len(after) == 1  # one blur for the folder: one sensor
    assert after.pop() < float(np.median(before)) - 0.05
    assert "white blur read back on 4 clean images" in note
    # nothing but the blur moves
    for a, b in zip(model.fitted, fixed.fitted, strict=True):
        assert dataclasses.replace(b, blur=a.blur) == a


def test_without_texture_the_read_back_reads_what_was_drawn() -> None:
    flat = [photo(200 + s, 0.0) for s in range(4)]
    blurs, readings = readback_curve(WHITE, flat)
    for blur, read in zip(blurs, readings, strict=True):
        if blur >= 0.4:  # below ~0.3 px a Gaussian barely correlates neighbours: nothing to read
            assert read == pytest.approx(blur, abs=0.08)
    # so a white fit on clean textureless images keeps (about) its blur
    model = NoiseModel(fitted=(dataclasses.replace(WHITE, blur=0.5),) * 3)
    fixed, _ = unblur_white(model, flat)
    assert fixed.fitted[0].blur == pytest.approx(0.5, abs=0.08)


def test_blurred_and_jpeg_folders_are_left_as_read() -> None:
    clean = [photo(300 + s, 0.01) for s in range(2)]
    for fits in (
        (dataclasses.replace(WHITE, blur=1.0),) * 3,  # camera noise: demosaiced
        (dataclasses.replace(WHITE, blur=0.4, jpeg_quality=90),) * 3,
        # a folder mostly blurred: its few white fits are not touched either
        (dataclasses.replace(WHITE, blur=1.0),) * 2 + (dataclasses.replace(WHITE, blur=0.4),),
    ):
        model = NoiseModel(fitted=fits)
        assert unblur_white(model, clean) == (model, "")


def test_nothing_to_read_back_on_leaves_the_model() -> None:
    model = NoiseModel(fitted=(dataclasses.replace(WHITE, blur=0.4),))
    assert unblur_white(model, []) == (model, "")
    # clean images too small to fit, even pooled
    tiny = [photo(s, 0.01, size=32) for s in range(3)]
    assert unblur_white(model, tiny) == (model, "")


def test_train_reads_a_large_noisy_image_on_its_centre_on_the_jpeg_grid(tmp_path, monkeypatch) -> None:
    """200 whole camera photos in float32 would not fit in memory: the fit reads each one's centre
    square, its corner on the 16-px grid that JPEG blocks lie on."""
    from PIL import Image

    from invrep_cli.data import JPEG_GRID, centre_crop
    from invrep_cli.training import noise_setup

    img = np.arange(100 * 90 * 3, dtype=np.float32).reshape(100, 90, 3)
    crop = centre_crop(img, 48, grid=JPEG_GRID)
    assert crop.shape == (48, 48, 3)
    assert crop[0, 0, 0] == img[16, 16, 0]  # (100 - 48) // 2 = 26 -> 16; (90 - 48) // 2 = 21 -> 16
    assert centre_crop(img, 512) is not img and centre_crop(img, 512).shape == img.shape
    assert centre_crop(img, 48)[0, 0, 0] == img[26, 21, 0]  # grid 1: the exact centre, as the report crops

    seen = []
    monkeypatch.setattr(noise_setup, "FIT_CROP", 64)
    monkeypatch.setattr(noise_setup, "fit_noise_model", lambda images, **kw: seen.extend(i.shape for i in images))
    Image.fromarray(np.zeros((100, 200, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    noise_setup.fit_folder([tmp_path / "a.png"], 10, False, "x", print)
    assert seen == [(64, 64, 3)]
