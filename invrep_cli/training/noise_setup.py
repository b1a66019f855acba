"""Stage 1's noise model: the --synthetic spec, or fitted to the --noisy folder (``noise.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from invrep_cli.config import TrainConfig
from invrep_cli.data import ImageEntry, parse_noise, read_image
from invrep_cli.errors import DataError
from invrep_cli.noise import NoiseModel, fit_noise_model, parse_mix

T = TypeVar("T")


def evenly_spaced(entries: Sequence[T], count: int) -> list[T]:
    """At most ``count`` entries spread over the sorted list (not the first few: one camera's)."""
    picks = np.unique(np.linspace(0, len(entries) - 1, min(count, len(entries))).astype(int))
    return [entries[int(i)] for i in picks]


def build_noise_model(cfg: TrainConfig, noisy: Sequence[ImageEntry], warn: Callable[[str], None]) -> NoiseModel:
    """The spec of --synthetic, else per-image fits of at most ``noise_fit_images`` images of the
    --noisy folder (DataError when none has flat areas to measure); --noise-mix on top."""
    if cfg.synthetic is not None:
        model = NoiseModel(spec=parse_noise(cfg.synthetic), source="--synthetic")
    else:
        images, paths = [], []
        for entry in evenly_spaced(noisy, cfg.noise_fit_images):
            try:
                images.append(read_image(entry.path))
                paths.append(entry.path)
            except Exception as exc:  # scan_images read them once; a file may change since
                warn(f"noise model: skipping {entry.path}: {exc}")
        try:
            fitted = fit_noise_model(
                images, source=f"{len(images)} images of {cfg.noisy_dir}", paths=paths, match=cfg.match_levels
            )
        except ValueError as exc:
            raise DataError(
                f"--noisy {cfg.noisy_dir}: cannot fit a noise model for the warm start: {exc} "
                "(give larger noisy images, or --warmup-steps 0 for LIR without a warm start)"
            ) from None
        model = dataclasses.replace(fitted, level_range=tuple(cfg.noise_scale), jpeg_fraction=cfg.jpeg_fraction)
    if cfg.noise_mix is not None:
        model = dataclasses.replace(model, mix=parse_mix(cfg.noise_mix))
    return model
