"""Correcting a white folder's fitted blur by reading it back on the clean folder (no pairs).

The block estimator (``noise.py``) reads a noise's spatial blur from the lag-1 correlation of the
residuals of a photo's flattest blocks. It was calibrated on pure noise; in a photo even those blocks
hold some texture, and texture is correlated, so on white noise it reads a blur of about 0.34 px
(README, Round BLUR0: drawing those fits at blur 0 instead scored +0.07 and +0.13 dB on two white
testbeds). How much it adds depends on the texture of the folder's kind of image, which the clean
folder has too: the folder's typical fit is drawn at a grid of blurs onto clean images and read
back with the same estimator, and the folder's white fits all get the blur whose read-back equals
their median reading (README, Round BLUR-READBACK: +0.068 and +0.113 dB on those two testbeds).

Only white folders are corrected (``white_folder``, as ``auto_level_range`` reads them: most fits read at most
SHOT_MAX_BLUR and none of those are JPEGs), and in them only the white non-JPEG fits. Camera noise
(demosaiced, often JPEG'd) reads blurred; the read-back was not measured there, so it is left as
the estimator reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from invrep_cli.data import JPEG_GRID, centre_crop
from invrep_cli.noise import (
    BLUR_GRID,
    SHOT_MAX_BLUR,
    ImageNoise,
    NoiseModel,
    fit_images,
    is_white,
    white_folder,
)

#: clean images the typical fit is drawn onto, and the largest side of the centre crop of each
#: (texture is what matters, not the whole of a large photo: 64 crops of 256 px hold 16,384
#: blocks; benchmarks/readback_time.py: 7.5 s on 64 CBSD432 photos' crops, 15.7 s on them whole)
READBACK_IMAGES = 64
READBACK_CROP = 256
#: the blurs drawn: the calibration's grid up to a little past the white cut
READBACK_BLURS = tuple(b for b in BLUR_GRID if b <= SHOT_MAX_BLUR + 0.2 + 1e-9)


def applies(model: NoiseModel) -> bool:
    """Whether ``unblur_white`` would correct ``model``: fitted, and a ``white_folder`` (the folder
    ``auto_level_range`` gives the narrow spread; train reads no clean image otherwise)."""
    return bool(model.fitted) and white_folder(model.fitted)


def readback_crop(img: np.ndarray) -> np.ndarray:
    """What of a clean image the read-back draws onto: its centre READBACK_CROP square."""
    return centre_crop(img, READBACK_CROP, JPEG_GRID)


def readback_curve(
    fit: ImageNoise, clean: Sequence[np.ndarray], clip_share: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The blurs of READBACK_BLURS and, for each, the median blur the estimator reads on ``fit``'s
    noise drawn at that blur onto the ``clean`` images (H x W x C in [0, 1]; small ones pooled as
    ``fit_images`` pools them). NaN where nothing could be read."""
    bases = [torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() for img in clean]
    readings = []
    for blur in READBACK_BLURS:
        model = NoiseModel(fitted=(dataclasses.replace(fit, blur=float(blur)),), jpeg_fraction=0.0)
        rng = torch.Generator().manual_seed(seed)  # the same noise at every blur: a smooth curve
        noisy = [model.sample(base, rng)[0].permute(1, 2, 0).numpy() for base in bases]
        fits, _ = fit_images(noisy, clip_share=clip_share)
        read = [f.blur for f in fits if f is not None]
        readings.append(float(np.median(read)) if read else float("nan"))
    return np.array(READBACK_BLURS), np.array(readings)


def unblur_white(model: NoiseModel, clean: Sequence[np.ndarray], seed: int = 0) -> tuple[NoiseModel, str]:
    """``model`` with its white fits' blurs corrected on the ``clean`` images (H x W x 3 in [0, 1],
    as train reads them: at most READBACK_IMAGES, each ``readback_crop``'d), and a note saying by
    how much ("" and the model unchanged where it is not white or nothing could be read back)."""
    fits = model.fitted
    if not clean or not applies(model):
        return model, ""
    white = [f for f in fits if is_white(f)]
    typical = NoiseModel(fitted=tuple(white)).typical_fit()
    assert typical is not None
    blurs, readings = readback_curve(typical, clean, model.clip_share, seed)
    ok = np.isfinite(readings)
    if ok.sum() < 2:
        return model, ""
    # the reading only grows with the blur drawn; a chance dip would make the inverse fold back.
    # Below ~0.3 px it barely grows (a Gaussian that narrow barely correlates neighbours): of blurs
    # that read alike, the smallest is kept, so a reading at the curve's foot is taken as white
    curve = np.maximum.accumulate(readings[ok])
    rising = np.concatenate([[True], np.diff(curve) > 1e-9])
    curve, grid = curve[rising], blurs[ok][rising]
    # one blur for the folder: it is one sensor (as for counted photons, fit_noise_model), and the
    # fits' spread of readings is the estimator's own (pooled groups of small images read 0.26-0.45
    # on the white testbed's one white noise); the inverse of the median reading
    before = float(np.median([f.blur for f in white]))
    after = float(np.interp(before, curve, grid))
    new = tuple(dataclasses.replace(f, blur=after) if is_white(f) else f for f in fits)
    note = (
        f"white blur read back on {len(clean)} clean images: {before:.2f} -> {after:.2f} px "
        f"(median; blur 0 drawn reads {curve[0]:.2f})"
    )
    return dataclasses.replace(model, fitted=new), note
