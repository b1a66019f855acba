"""Stage 1's noise model: the --synthetic spec, or fitted to the --noisy folder (``noise.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from invrep_cli import blur_readback
from invrep_cli.config import TrainConfig
from invrep_cli.data import JPEG_GRID, ImageEntry, centre_crop, parse_noise, read_image
from invrep_cli.errors import DataError
from invrep_cli.noise import NoiseModel, auto_level_range, fit_noise_model, parse_mix

T = TypeVar("T")


def evenly_spaced(entries: Sequence[T], count: int) -> list[T]:
    """At most ``count`` entries spread over the sorted list (not the first few: one camera's)."""
    picks = np.unique(np.linspace(0, len(entries) - 1, min(count, len(entries))).astype(int))
    return [entries[int(i)] for i in picks]


#: the noise fit reads at most the centre FIT_CROP x FIT_CROP of each noisy image: 200 whole
#: 12-megapixel photos in float32 are 29 GB, and 1024 px hold 4,096 of the estimator's blocks (a
#: 512-px image, the largest of every folder measured here, 1,024), so no measured fit changes
FIT_CROP = 1024


def fit_folder(
    files: Sequence[Path], count: int, match: bool, folder: str, warn: Callable[[str], None]
) -> NoiseModel:
    """The fit of a noisy folder as train makes it: per-image fits of at most ``count`` of its
    ``files``, evenly spaced, each read on its centre FIT_CROP square (JPEG levels matched with
    ``match``); ValueError when none has flat areas to measure. benchmarks/noref_choice.py
    --folder-fit makes the same call."""
    paths, images = read_some(files, count, warn, "noise model", crop=lambda img: centre_crop(img, FIT_CROP, JPEG_GRID))
    return fit_noise_model(images, source=f"{len(images)} images of {folder}", paths=paths, match=match)


def read_some(
    files: Sequence[Path], count: int, warn: Callable[[str], None], what: str,
    crop: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[list[Path], list[np.ndarray]]:  # fmt: skip
    """At most ``count`` of ``files``, evenly spaced, read (and their paths), each cut by ``crop``
    as soon as it is read (64 whole 24-megapixel photos in float32 would be 18 GB); unreadable
    ones are skipped with a warning."""
    paths, images = [], []
    for path in evenly_spaced(files, count):
        try:
            image = read_image(path)
            images.append(crop(image) if crop is not None else image)
            paths.append(path)
        except Exception as exc:  # scan_images read them once; a file may change since
            warn(f"{what}: skipping {path}: {exc}")
    return paths, images


def build_noise_model(
    cfg: TrainConfig, noisy: Sequence[ImageEntry], warn: Callable[[str], None], clean: Sequence[ImageEntry] = ()
) -> NoiseModel:
    """The spec of --synthetic, else per-image fits of at most ``noise_fit_images`` images of the
    --noisy folder (DataError when none has flat areas to measure), a white folder's blur read back
    on the ``clean`` images (--blur-readback); --noise-mix on top."""
    if cfg.synthetic is not None:
        model = NoiseModel(spec=parse_noise(cfg.synthetic), source="--synthetic")
    else:
        files = [entry.path for entry in noisy]
        try:
            fitted = fit_folder(files, cfg.noise_fit_images, cfg.match_levels, str(cfg.noisy_dir), warn)
        except ValueError as exc:
            raise DataError(
                f"--noisy {cfg.noisy_dir}: cannot fit a noise model for the warm start: {exc} "
                "(give larger noisy images, or --warmup-steps 0 for LIR without a warm start)"
            ) from None
        spread = tuple(cfg.noise_scale) if cfg.noise_scale is not None else auto_level_range(fitted.fitted)
        model = dataclasses.replace(fitted, level_range=spread, jpeg_fraction=cfg.jpeg_fraction)
        if cfg.blur_readback and clean and blur_readback.applies(model):
            files, count = [e.path for e in clean], blur_readback.READBACK_IMAGES
            _, crops = read_some(files, count, warn, "blur read-back", crop=blur_readback.readback_crop)
            model, note = blur_readback.unblur_white(model, crops)
            if note:
                model = dataclasses.replace(model, level_note="; ".join(filter(None, (model.level_note, note))))
    if cfg.noise_mix is not None:
        model = dataclasses.replace(model, mix=parse_mix(cfg.noise_mix))
    return model
