"""The noise models of the warm start and their estimator: known parameters must come back."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from invrep_cli.data import parse_noise
from invrep_cli.noise import (
    BLURRED_LEVEL_RANGE,
    GRAY_CORR,
    WHITE_LEVEL_RANGE,
    ImageNoise,
    NoiseModel,
    auto_level_range,
    debanded,
    estimate_sigma,
    fit_image_noise,
    fit_images,
    fit_noise_model,
    jpeg_roundtrip,
    jpeg_settings,
    match_fit,
    sample_fitted,
    sample_spec,
)

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


def test_column_banding_is_read_apart_from_the_white_noise() -> None:
    """Column read-out noise (an offset per column) is measured as such, and taken out before the
    white noise is fitted, so that the white level is not read high; rows have none."""
    truth = ImageNoise((0.0,) * 3, (0.02**2,) * 3, 0.0, EYE, column_std=0.02)
    fit = fit_image_noise(make_noisy(scene(6), truth))
    assert fit is not None
    assert fit.column_std == pytest.approx(0.02, rel=0.15)
    assert fit.row_std == 0.0
    assert np.mean(fit.std_at(0.5)) == pytest.approx(0.02, rel=0.10)
    rows = dataclasses.replace(truth, column_std=0.0, row_std=0.02)
    fit = fit_image_noise(make_noisy(scene(6), rows))
    assert fit is not None and fit.column_std == 0.0 and fit.row_std == pytest.approx(0.02, rel=0.15)


@pytest.mark.parametrize("blur", [0.0, 0.9])
def test_no_banding_is_read_in_white_or_correlated_noise(blur: float) -> None:
    noisy = make_noisy(scene(7), ImageNoise((0.002,) * 3, (0.0004,) * 3, blur, EYE))
    fit = fit_image_noise(noisy)
    assert fit is not None and fit.column_std == 0.0 and fit.row_std == 0.0
    assert "banding" not in fit_noise_model([noisy]).describe()


def test_banding_is_drawn_constant_along_its_column_and_row() -> None:
    flat = torch.full((8, 3, 48, 64), 0.5, dtype=torch.float64)
    cols = ImageNoise((0.0,) * 3, (0.0,) * 3, 0.0, EYE, column_std=0.03)
    noise = sample_fitted(flat, [cols], torch.Generator().manual_seed(0)) - flat
    assert torch.allclose(noise, noise[:, :1, :1].expand_as(noise))  # same down a column, in every channel
    assert float(noise[:, 0, 0].std()) == pytest.approx(0.03, rel=0.15)
    rows = dataclasses.replace(cols, column_std=0.0, row_std=0.03)
    noise = sample_fitted(flat, [rows], torch.Generator().manual_seed(0), level_range=(2.0, 2.0 + 1e-9)) - flat
    assert torch.allclose(noise, noise[..., :1].expand_as(noise))
    assert float(noise[:, 0, :, 0].std()) == pytest.approx(0.06, rel=0.15)  # scaled with the level
    assert ImageNoise.from_dict(rows.to_dict()) == rows


def test_a_gray_images_noise_is_fitted_and_drawn_gray() -> None:
    """A gray file is read as three equal channels: its noise must be drawn gray too, not with the
    chroma noise that a correlation of 0.95 (the calibration's top) would add."""
    noisy = make_noisy(scene(8), ImageNoise((0.0,) * 3, (0.03**2,) * 3, 0.5, EYE)).mean(axis=2, keepdims=True)
    fit = fit_image_noise(np.repeat(noisy, 3, axis=2))
    assert fit is not None and np.allclose(fit.channel_corr, 1.0)
    assert np.mean(fit.std_at(0.5)) == pytest.approx(0.03 / np.sqrt(3), rel=0.15)  # a mean of 3 draws
    gray = torch.full((4, 3, 32, 32), 0.5)
    drawn = NoiseModel(fitted=(fit,)).sample(gray, torch.Generator().manual_seed(0))
    assert torch.equal(drawn[:, 0], drawn[:, 1]) and torch.equal(drawn[:, 0], drawn[:, 2])
    colour = fit_image_noise(make_noisy(scene(8), ImageNoise((0.0,) * 3, (0.03**2,) * 3, 0.5, EYE)))
    assert colour is not None and colour.channel_corr[0][1] < 0.3


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


def counted(img: np.ndarray, photons: float, seed: int) -> np.ndarray:
    """``img`` as photons counted at ``photons`` full scale, saved in 8 bits."""
    rng = np.random.default_rng(seed)
    return np.round(np.clip(rng.poisson(img * photons) / photons, 0, 1) * 255) / 255


def test_counted_photons_are_read_and_gaussian_noise_of_their_variance_is_not() -> None:
    """Shot noise at 30 photons full scale is skewed (third cumulant gain^2 * I); Gaussian noise with
    the same variance gain * I is not. Only the first is drawn as counts."""
    shot = fit_noise_model([counted(scene(s), 30, s) for s in range(3)], source="t")
    assert all(f.photons for f in shot.fitted) and "counted photons" in shot.describe()
    assert np.mean(shot.fitted[0].gain) == pytest.approx(1 / 30, rel=0.15)
    rng = np.random.default_rng(0)
    gaussian = [np.round(np.clip(x + np.sqrt(x / 30) * rng.standard_normal(x.shape), 0, 1) * 255) / 255
                for x in (scene(s) for s in range(3))]
    model = fit_noise_model(gaussian, source="t")
    assert np.mean(model.fitted[0].gain) == pytest.approx(1 / 30, rel=0.15)
    assert not any(f.photons for f in model.fitted) and "counted photons" not in model.describe()


def test_a_gray_white_fit_counts_photons_without_the_skew_test() -> None:
    """Colour Gaussian noise of variance gain * I is drawn Gaussian (above); gray, the same noise is
    drawn as counts, which scored higher on both gray Gaussian folders measured (README, Round WHITE).
    Blurred gray noise stays Gaussian: the shot draw is white."""
    rng = np.random.default_rng(1)
    gray = [np.repeat(scene(s)[..., :1], 3, axis=2) for s in range(3)]
    white = [np.round(np.clip(x + np.sqrt(x / 30) * rng.standard_normal(x.shape[:2])[..., None], 0, 1) * 255) / 255
             for x in gray]  # fmt: skip
    model = fit_noise_model(white, source="t")
    assert all(f.photons for f in model.fitted)
    assert np.mean(model.fitted[0].gain) == pytest.approx(1 / 30, rel=0.15)
    blurred = [make_noisy(x, ImageNoise((1 / 30,) * 3, (0.0,) * 3, 1.0, GRAY_CORR), s) for s, x in enumerate(gray)]
    assert not any(f.photons for f in fit_noise_model(blurred, source="t").fitted)


def test_a_dim_16_bit_image_has_its_signal_dependent_noise_read() -> None:
    """A 12-bit camera's counts in a 16-bit file fill 1/16 of the range, on a black level of 100
    counts. Fixed bins over [0, 1] put every block in one bin, so no gain was read (and 8-bit
    clipping read the black level as clipped); binned over the image's own range, the gain returns."""
    rng = np.random.default_rng(0)
    gain, read = 0.05 / 1000, 0.0003  # 1,000 photons at the top of the dim range
    images = []
    for s in range(2):
        x = 0.0015 + 0.05 * scene(s)[:, :, :1]
        y = x + np.sqrt(gain * x) * rng.standard_normal(x.shape) + read * rng.standard_normal(x.shape)
        images.append(np.round(np.clip(y, 0, 1) * 65535) / 65535)
    fits = [fit_image_noise(img) for img in images]
    assert all(f is not None for f in fits)
    assert np.mean([f.gain[0] for f in fits]) == pytest.approx(gain, rel=0.25)


def test_a_dim_few_photon_image_counts_photons() -> None:
    """30 photons at the top of an image that fills a quarter of the 8-bit range is 120 photons at
    full scale: a gate on full-scale photons (100, before Round GATE) drew it Gaussian."""
    dim = [counted(0.25 * scene(s), 120, s) for s in range(3)]
    model = fit_noise_model(dim, source="t")
    assert all(f.photons for f in model.fitted)
    assert np.mean(model.fitted[0].gain) == pytest.approx(1 / 120, rel=0.2)


def test_counted_photons_in_a_jpeg_file_are_drawn_gaussian(tmp_path) -> None:
    """JPEG rounds away the skew the test reads, and a JPEG'd fit's level is corrected by Gaussian
    synthesis: such fits never count photons."""
    from PIL import Image

    paths, images = [], []
    for s in range(3):
        paths.append(tmp_path / f"{s}.jpg")
        Image.fromarray((counted(scene(s), 30, s) * 255).round().astype(np.uint8)).save(paths[-1], quality=95)
        images.append(np.asarray(Image.open(paths[-1]).convert("RGB")) / 255.0)
    model = fit_noise_model(images, source="t", paths=paths)
    assert all(f.jpeg_quality == 95 and not f.photons for f in model.fitted)


def test_counted_photons_are_drawn_as_counts_with_the_fitted_statistics() -> None:
    gain = 1 / 20
    fit = ImageNoise((gain,) * 3, (0.0,) * 3, 0.0, GRAY_CORR, photons=True)
    flat = torch.full((8, 3, 64, 64), 0.3)
    noise = sample_fitted(flat, [fit], torch.Generator().manual_seed(0)) - flat
    counts = (flat + noise) / gain
    assert torch.allclose(counts, torch.round(counts), atol=1e-4)  # whole photons, no floor
    assert torch.equal(noise[:, 0], noise[:, 1]) and torch.equal(noise[:, 0], noise[:, 2])  # gray
    n = noise[:, 0].double()
    assert float(n.mean()) == pytest.approx(0.0, abs=2e-3)
    assert float(n.var()) == pytest.approx(gain * 0.3, rel=0.05)
    assert float(((n - n.mean()) ** 3).mean()) == pytest.approx(gain**2 * 0.3, rel=0.15)  # Poisson skew
    twice = sample_fitted(flat, [fit], torch.Generator().manual_seed(1), level_range=(2.0, 2.0)) - flat
    assert float(twice[:, 0].double().var()) == pytest.approx(4 * gain * 0.3, rel=0.05)
    gaussian = sample_fitted(flat, [dataclasses.replace(fit, photons=False)], torch.Generator().manual_seed(0)) - flat
    assert float(gaussian[:, 0].double().var()) == pytest.approx(gain * 0.3, rel=0.05)
    assert abs(float((gaussian[:, 0].double() ** 3).mean())) < 0.2 * gain**2 * 0.3


def test_the_auto_spread_is_narrow_for_white_fits_and_wide_for_blurred_or_jpeg_ones() -> None:
    white = fit_image_noise(make_noisy(scene(11), ImageNoise((0.002,) * 3, (0.0004,) * 3, 0.0, EYE)))
    blurred = fit_image_noise(make_noisy(scene(11), ImageNoise((0.002,) * 3, (0.0004,) * 3, 1.0, EYE)))
    assert white is not None and blurred is not None
    assert auto_level_range([white]) == WHITE_LEVEL_RANGE
    assert auto_level_range([blurred]) == BLURRED_LEVEL_RANGE
    assert auto_level_range([dataclasses.replace(white, jpeg_quality=90)]) == BLURRED_LEVEL_RANGE
    # the folder's majority decides, a tie goes to the wide spread
    assert auto_level_range([white, white, blurred]) == WHITE_LEVEL_RANGE
    assert auto_level_range([white, blurred]) == BLURRED_LEVEL_RANGE


def test_heavy_noise_is_fitted_from_blocks_with_a_few_clipped_samples() -> None:
    """At std 50 of 255 nearly every 16 x 16 block of a scene clips a sample, so no image could be
    fitted; the folder is read from blocks with up to 5 % clipped, near the truth. A folder that
    fits without clipped blocks fits exactly as before."""
    heavy = ImageNoise((0.0,) * 3, ((50 / 255) ** 2,) * 3, 0.0, GRAY_CORR)
    noisy = [make_noisy(scene(s), heavy, s) for s in range(2)]
    assert fit_images(noisy)[0] == [None, None]  # what the estimator could do before
    model = fit_noise_model(noisy)
    assert model.clip_share == 0.05 and "heavy noise" in model.describe()
    assert np.median([np.mean(f.std_at(0.5)) for f in model.fitted]) == pytest.approx(50 / 255, rel=0.1)
    assert NoiseModel.from_dict(model.to_dict()).clip_share == 0.05
    assert estimate_sigma(noisy[0]) == pytest.approx(50 / 255, rel=0.1)  # bench's level for classical methods
    light = [make_noisy(scene(s), ImageNoise((0.0,) * 3, ((10 / 255) ** 2,) * 3, 0.0, GRAY_CORR), s) for s in range(2)]
    plain = fit_noise_model(light)
    assert plain.clip_share == 0.0 and plain.fitted == tuple(fit_images(light)[0])


def _sky_over_ground(std: float, column_std: float, seed: int) -> np.ndarray:
    """A bright top over a dark bottom (rows of different intensity), white signal-dependent noise
    of ``std`` at mid-gray (a quarter of the pixels clip at std 75) and column banding."""
    rng = np.random.default_rng(seed)
    yy = np.mgrid[0:256, 0:256][0] / 256
    img = np.where(yy < 0.5, 0.85, 0.12) + 0.05 * yy
    s = std / 255
    noisy = img + np.sqrt(1.5 * s * s * img + 0.25 * s * s) * rng.standard_normal(img.shape)
    noisy = noisy + column_std / 255 * rng.standard_normal((1, 256))
    return np.repeat(np.round(np.clip(noisy, 0, 1) * 255)[:, :, None] / 255, 3, axis=2)


def test_heavy_clipped_noise_reads_no_banding_from_its_rows_intensities() -> None:
    """Clipped noise is skewed, and the median of a pixel less its neighbours' mean is the skew's,
    which changes with each row's intensity: the plain test reads that as row banding. The heavy
    test (pixel less one neighbour at a time) reads none, and still reads real column banding."""
    plain = [debanded(_sky_over_ground(75, 0, s))[2] for s in range(4)]
    assert all(row > 0 for row in plain)  # the spurious banding the heavy test is for
    heavy = [debanded(_sky_over_ground(75, 0, s), heavy=True) for s in range(4)]
    assert all(col == 0 and row == 0 for _, col, row in heavy)
    banded = [debanded(_sky_over_ground(50, 10, s), heavy=True) for s in range(4)]
    assert all(row == 0 and 4 / 255 < col < 12 / 255 for _, col, row in banded)  # clipping reads it low


def test_an_image_too_small_to_fit_gets_the_wavelet_level() -> None:
    """bench's non-local means at the estimated level: a 96-px crop of heavy noise has too few
    flat blocks for a fit of its own; it used to read 0, and NLM left it as it was."""
    noisy = make_noisy(scene(5, size=96), ImageNoise((0.0,) * 3, ((60 / 255) ** 2,) * 3, 0.0, GRAY_CORR), 5)
    assert fit_image_noise(noisy) is None
    assert 40 / 255 < estimate_sigma(noisy) < 70 / 255


def test_spec_model_blind_range() -> None:
    model = NoiseModel(spec=parse_noise("gaussian:5-50"))
    torch.manual_seed(0)
    flat = torch.full((64, 3, 32, 32), 0.5)
    stds = (model.sample(flat) - flat).flatten(1).std(1) * 255
    assert 4 < float(stds.min()) < 12 and 43 < float(stds.max()) < 52
    assert NoiseModel.from_dict(model.to_dict()).spec == model.spec


def test_small_images_are_fitted_by_pooling_their_blocks() -> None:
    """A folder of 128-px crops: none has blocks enough to fit alone, pooled they read the truth
    (level and blur), and the warm start's model and the no-reference score can use them."""
    sigma, blur = 0.04, 0.8
    truth = ImageNoise((0.0,) * 3, (sigma**2,) * 3, blur, EYE)
    crops = [make_noisy(scene(10 + k, size=128), truth, seed=k) for k in range(10)]
    assert all(fit_image_noise(c) is None for c in crops)
    fits, pooled = fit_images(crops)
    assert pooled == set(range(len(crops)))
    for fit in fits:
        assert fit is not None
        assert np.mean(fit.std_at(0.5)) == pytest.approx(sigma, rel=0.15)
        assert fit.blur == pytest.approx(blur, abs=0.25)
    model = fit_noise_model(crops, source="crops")
    assert len(model.fitted) == len(crops) and "pooled" in model.describe()


def test_pooling_leaves_images_that_fit_alone_unchanged() -> None:
    truth = ImageNoise((0.0,) * 3, (0.03**2,) * 3, 0.0, EYE)
    big = make_noisy(scene(20), truth)
    fits, pooled = fit_images([big, make_noisy(scene(21, size=64), truth)])
    assert fits[0] == fit_image_noise(big)
    assert pooled == set()  # one small image alone is not a group: tried alone, it stays unfitted
    assert fits[1] is None


def test_featureless_images_cannot_be_fitted() -> None:
    with pytest.raises(ValueError, match="flat areas"):
        fit_noise_model([np.random.default_rng(0).random((16, 16, 3))])


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    t = torch.from_numpy(img.transpose(2, 0, 1)).float()
    return jpeg_roundtrip(t, quality).numpy().transpose(1, 2, 0)


@pytest.mark.parametrize(("quality", "subsampling"), [(75, 2), (92, 0), (40, 1)])
def test_jpeg_settings_read_from_the_quantisation_tables(tmp_path, quality: int, subsampling: int) -> None:
    from PIL import Image

    img = Image.fromarray((scene(0, 64) * 255).astype(np.uint8))
    img.save(tmp_path / "a.jpg", quality=quality, subsampling=subsampling)
    img.save(tmp_path / "a.png")
    assert jpeg_settings(tmp_path / "a.jpg") == (quality, subsampling)
    assert jpeg_settings(tmp_path / "a.png") is None
    assert jpeg_settings(tmp_path / "missing.jpg") is None


def test_jpeg_round_trip_is_pillows_and_keeps_gray_gray() -> None:
    import io

    from PIL import Image

    img = np.round(scene(1, 64) * 255) / 255
    out = _jpeg(img, 60)
    buf = io.BytesIO()
    Image.fromarray((img * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=60)
    expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")) / 255.0
    assert np.allclose(out, expected, atol=1e-6)
    gray = jpeg_roundtrip(torch.from_numpy(img[:, :, :1].transpose(2, 0, 1)).float(), 60)
    assert gray.shape == (1, 64, 64)


def test_match_fit_undoes_what_jpeg_hides_from_the_estimator() -> None:
    """JPEG at quality 75 makes the estimator read camera-like noise ~35 % low and too blurred;
    matching by synthesis brings level and blur back near the truth. Uncompressed fits are untouched."""
    corr = ((1.0, 0.7, 0.7), (0.7, 1.0, 0.7), (0.7, 0.7, 1.0))
    truth = ImageNoise((0.0,) * 3, (0.01**2,) * 3, 0.5, corr)
    noisy = make_noisy(scene(1), truth)
    read = fit_image_noise(_jpeg(noisy, 75))
    assert read is not None
    read = dataclasses.replace(read, jpeg_quality=75)
    assert np.mean(read.std_at(0.5)) < 0.8 * 0.01 and read.blur > 0.7  # what JPEG hides
    matched, factor = match_fit(read, _jpeg(noisy, 75))
    assert np.mean(matched.std_at(0.5)) == pytest.approx(0.01, rel=0.1)
    assert abs(matched.blur - 0.5) < 0.2 and factor > 1.2
    plain = fit_image_noise(noisy)
    assert plain is not None and match_fit(plain, noisy) == (plain, 1.0)


def test_jpeg_fraction_saves_that_share_of_crops_as_jpeg() -> None:
    fit = ImageNoise((0.0,) * 3, (0.02**2,) * 3, 0.3, EYE, jpeg_quality=50)
    clean = torch.from_numpy(scene(2, 64).transpose(2, 0, 1)).float()[None].repeat(8, 1, 1, 1)
    raw = NoiseModel(fitted=(fit,), jpeg_fraction=0.0).sample(clean, torch.Generator().manual_seed(0))
    all_jpeg = NoiseModel(fitted=(fit,), jpeg_fraction=1.0).sample(clean, torch.Generator().manual_seed(0))
    for a, b in zip(raw, all_jpeg, strict=True):  # same noise, then the round trip
        assert torch.allclose(jpeg_roundtrip(a, 50), b, atol=1e-6)
    half = NoiseModel(fitted=(fit,), jpeg_fraction=0.5).sample(clean, torch.Generator().manual_seed(0))
    compressed = sum(not torch.equal(h, r) for h, r in zip(half, raw, strict=True))
    assert 0 < compressed < 8


def test_jpeg_fields_round_trip_and_old_models_load() -> None:
    fit = ImageNoise((0.001,) * 3, (0.0001,) * 3, 0.4, EYE, jpeg_quality=75, jpeg_subsampling=2)
    model = NoiseModel(fitted=(fit,), jpeg_fraction=0.3, level_note="JPEG fits corrected")
    back = NoiseModel.from_dict(model.to_dict())
    assert back == model and "JPEG quality 75" in back.describe() and "0.3 of the crops" in back.describe()
    old = model.to_dict()
    for f in old["fitted"]:
        del f["jpeg_quality"], f["jpeg_subsampling"]
    del old["jpeg_fraction"], old["level_note"]
    assert NoiseModel.from_dict(old).fitted[0].jpeg_quality == 0


def test_fits_without_counted_photons_never_draw_from_the_poisson_stream(monkeypatch) -> None:
    """Camera folders count no photons: their crops must be drawn exactly as before counting
    existed, so nothing may draw Poisson numbers from the shared generator."""
    fit = ImageNoise((0.03,) * 3, (1e-4,) * 3, 0.0, GRAY_CORR)
    monkeypatch.setattr(torch, "poisson", lambda *a, **k: pytest.fail("drew from the Poisson stream"))
    sample_fitted(torch.full((2, 3, 16, 16), 0.5), [fit], torch.Generator().manual_seed(0), level_range=(0.6, 2.5))
    with pytest.raises(pytest.fail.Exception):
        sample_fitted(torch.full((2, 3, 16, 16), 0.5), [dataclasses.replace(fit, photons=True)])


def test_counted_photons_round_trip_and_older_fits_count_none() -> None:
    fit = ImageNoise((0.03,) * 3, (0.0,) * 3, 0.0, GRAY_CORR, photons=True)
    assert ImageNoise.from_dict(fit.to_dict()) == fit
    old = fit.to_dict()
    del old["photons"]
    assert ImageNoise.from_dict(old).photons is False


@pytest.mark.parametrize("channel_corr", [0.0, 0.5, 0.8])
def test_fit_noise_model_reads_jpeg_files(tmp_path, channel_corr: float) -> None:
    """Matching brings the level of a JPEG file's noise nearer the truth than the raw reading, for
    any channel correlation. It cannot be exact: after 4:2:0 JPEG the correlation reads ~0.95
    whatever it was, and chroma noise, which JPEG removes most, depends on it."""
    from PIL import Image

    corr = np.full((3, 3), channel_corr)
    np.fill_diagonal(corr, 1.0)
    noisy = make_noisy(scene(3), ImageNoise((0.0,) * 3, (0.012**2,) * 3, 0.5, tuple(map(tuple, corr))))
    Image.fromarray((noisy * 255).round().astype(np.uint8)).save(tmp_path / "n.jpg", quality=80)
    img = np.asarray(Image.open(tmp_path / "n.jpg").convert("RGB")) / 255.0
    raw = fit_image_noise(img)
    model = fit_noise_model([img], source="t", paths=[tmp_path / "n.jpg"], match=True)
    assert model.fitted[0].jpeg_quality == 80 and "JPEG fits corrected" in model.describe()
    matched = float(np.mean(model.fitted[0].std_at(0.5)))
    assert raw is not None and abs(matched - 0.012) < abs(float(np.mean(raw.std_at(0.5))) - 0.012)
    if channel_corr == 0.5:
        assert matched == pytest.approx(0.012, rel=0.15)


def test_noise_mix_draws_each_component_by_its_share() -> None:
    """--noise-mix: the clean share is left exactly as an 8-bit file holds it, the spec components
    have their own statistics, and the shares come out as asked."""
    from invrep_cli.noise import parse_mix

    mix = parse_mix("clean=2,gaussian:30=1,poisson-gaussian:10-10=1")
    assert mix == (("clean", 0.5), ("gaussian:30", 0.25), ("poisson-gaussian:10-10", 0.25))
    model = NoiseModel(spec=parse_noise("gaussian:5"), mix=mix)
    torch.manual_seed(0)
    clean = torch.full((2000, 3, 24, 24), 100 / 255)
    std = (model.sample(clean) - clean).flatten(1).std(1) * 255
    untouched = std < 0.01
    assert abs(float(untouched.float().mean()) - 0.5) < 0.05
    heavy, light = std > 20, (std > 5) & (std < 20)  # gaussian:30 vs poisson-gaussian at std ~10
    assert abs(float(heavy.float().mean()) - 0.25) < 0.04
    assert abs(float(light.float().mean()) - 0.25) < 0.04
    assert abs(float(std[heavy].mean()) - 30) < 1.0
    assert NoiseModel.from_dict(model.to_dict()) == model


def test_noise_mix_own_component_is_the_base_model() -> None:
    from invrep_cli.noise import parse_mix

    model = NoiseModel(spec=parse_noise("gaussian:20"), mix=parse_mix("own=1"))
    clean = torch.full((64, 1, 32, 32), 0.5)  # gray crops (one channel) go through it too
    std = (model.sample(clean) - clean).flatten(1).std(1) * 255
    assert float((std - 20).abs().max()) < 3
    assert "own = gaussian:20" in model.describe()


@pytest.mark.parametrize(
    "text", ["clean", "clean=0", "clean=x", "speckle:3=1", "clean=1,clean=2", "gaussian:9-1=1"]
)
def test_noise_mix_refuses_bad_specs(text: str) -> None:
    from invrep_cli.noise import parse_mix

    with pytest.raises(ValueError):
        parse_mix(text)


def test_poisson_gaussian_spec_is_signal_dependent() -> None:
    spec = parse_noise("poisson-gaussian:20-20")
    assert spec.describe() == "poisson-gaussian:20-20"
    torch.manual_seed(0)
    dark, mid = torch.full((400, 3, 16, 16), 0.05), torch.full((400, 3, 16, 16), 0.5)
    from invrep_cli.noise import sample_spec

    s_mid = float((sample_spec(mid, spec) - mid).std() * 255)
    s_dark = float((sample_spec(dark, spec) - dark).std() * 255)
    assert abs(s_mid - 20) < 1.0 and s_dark < 0.85 * s_mid


def test_correlated_spec_has_its_level_and_a_blur_the_estimator_reads() -> None:
    """correlated:20 is poisson-gaussian:20 with a spatially blurred field: the same std at
    mid-gray, neighbouring pixels correlated, and the fit reads a blur within CORRELATED_BLUR where
    the white spec reads none; the file path (data.add_noise) draws the same kind of noise."""
    from invrep_cli.data import CORRELATED_BLUR, add_noise

    spec = parse_noise("correlated:20")
    assert spec.describe() == "correlated:20-20"
    flat = torch.full((8, 3, 64, 64), 0.5)
    noise = sample_spec(flat, spec, torch.Generator().manual_seed(0)) - flat
    assert float(noise.std()) * 255 == pytest.approx(20, rel=0.08)
    lag1 = float((noise[..., 1:] * noise[..., :-1]).mean() / noise.var())
    assert lag1 > 0.4  # white noise: ~0
    correlated = add_noise(scene(30), spec, np.random.default_rng(0))
    white = add_noise(scene(30), parse_noise("poisson-gaussian:20"), np.random.default_rng(0))
    fit_c, fit_w = fit_image_noise(correlated), fit_image_noise(white)
    assert fit_c is not None and fit_w is not None
    assert CORRELATED_BLUR[0] - 0.2 <= fit_c.blur <= CORRELATED_BLUR[1] + 0.2 and fit_w.blur < 0.3
    assert np.mean(fit_c.std_at(0.5)) * 255 == pytest.approx(20, rel=0.15)
