"""The noise models of the warm start and their estimator: known parameters must come back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invrep_cli.data import parse_noise
from invrep_cli.noise import ImageNoise, NoiseModel, estimate_sigma, fit_image_noise, fit_noise_model, sample_fitted

EYE = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def scene(seed: int, size: int = 384) -> np.ndarray:
    """Smooth ramps over the whole intensity range (dark ones too: the floor of a signal-dependent
    model is its value at black) plus a blocky textured square that must not be taken for noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.04 + 0.9 * (0.6 * xx + 0.3 * yy + 0.1 * (1 + np.sin(3 * xx + c)) / 2) for c in range(3)], -1)
    tex = np.kron(rng.random((size // 8, size // 8)), np.ones((8, 8)))
    k = size // 3
    img[k : 2 * k, k : 2 * k] = 0.3 + 0.4 * tex[:k, :k, None]
    return np.clip(img, 0.03, 0.95)


def make_noisy(img: np.ndarray, noise: ImageNoise, seed: int = 0) -> np.ndarray:
    t = torch.from_numpy(img.transpose(2, 0, 1)[None]).float()
    out = sample_fitted(t, [noise], torch.Generator().manual_seed(seed))
    return np.round(np.clip(out[0].numpy().transpose(1, 2, 0), 0, 1) * 255) / 255


def test_gaussian_sigma_recovered() -> None:
    sigma = 0.05
    fit = fit_image_noise(make_noisy(scene(1), ImageNoise((0.0,) * 3, (sigma**2,) * 3, 0.0, EYE)))
    assert fit is not None
    for ch in range(3):
        assert fit.std_at(0.5)[ch] == pytest.approx(sigma, rel=0.10)
    assert fit.blur < 0.4


def test_poisson_gaussian_gain_and_floor_recovered() -> None:
    gain, floor = 0.006, 0.0008
    fit = fit_image_noise(make_noisy(scene(2), ImageNoise((gain,) * 3, (floor,) * 3, 0.0, EYE)))
    assert fit is not None
    assert np.mean(fit.gain) == pytest.approx(gain, rel=0.10)
    assert np.mean(fit.floor) == pytest.approx(floor, rel=0.10)


def test_correlated_noise_level_blur_and_channel_correlation() -> None:
    """Camera-like noise: spatially blurred and correlated across channels. The level must be
    that of all of it, not only of its finest-scale part (which a wavelet estimator sees)."""

    sigma, blur = 0.03, 0.8
    corr = ((1.0, 0.5, 0.3), (0.5, 1.0, 0.5), (0.3, 0.5, 1.0))
    noisy = make_noisy(scene(3), ImageNoise((0.0,) * 3, (sigma**2,) * 3, blur, corr))
    fit = fit_image_noise(noisy)
    assert fit is not None
    assert np.mean(fit.std_at(0.5)) == pytest.approx(sigma, rel=0.10)
    assert fit.blur == pytest.approx(blur, abs=0.2)
    assert fit.channel_corr[0][1] == pytest.approx(0.5, abs=0.12)
    assert estimate_sigma(noisy) == pytest.approx(sigma, rel=0.10)


def test_clean_image_has_almost_no_noise() -> None:
    fit = fit_image_noise(np.round(scene(4) * 255) / 255)
    assert fit is not None and max(fit.std_at(0.5)) < 0.005


def test_fitted_model_samples_the_fitted_statistics() -> None:
    truth = ImageNoise((0.004,) * 3, (0.0003,) * 3, 0.0, EYE)
    model = fit_noise_model([make_noisy(scene(5), truth, seed=s) for s in range(2)], source="test")
    assert len(model.fitted) == 2 and "fitted" in model.describe()
    again = NoiseModel.from_dict(model.to_dict())
    assert again.fitted == tuple(ImageNoise.from_dict(f.to_dict()) for f in model.fitted)
    flat = torch.full((4, 3, 64, 64), 0.5)
    torch.manual_seed(0)
    noisy = model.sample(flat)
    assert noisy.shape == flat.shape
    assert float((noisy - flat).std()) == pytest.approx(truth.std_at(0.5)[0], rel=0.15)
    assert torch.allclose(noisy * 255, torch.round(noisy * 255))  # 8-bit values, as saved files hold


def test_spec_model_blind_range() -> None:
    model = NoiseModel(spec=parse_noise("gaussian:5-50"))
    torch.manual_seed(0)
    flat = torch.full((64, 3, 32, 32), 0.5)
    stds = (model.sample(flat) - flat).flatten(1).std(1) * 255
    assert 4 < float(stds.min()) < 12 and 43 < float(stds.max()) < 52
    assert NoiseModel.from_dict(model.to_dict()).spec == model.spec


def test_featureless_images_cannot_be_fitted() -> None:
    with pytest.raises(ValueError, match="flat areas"):
        fit_noise_model([np.random.default_rng(0).random((16, 16, 3))])
