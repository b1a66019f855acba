"""How long train's blur read-back (``blur_readback.unblur_white``) takes at start-up: a white fit
(std 20 at mid-gray, blur 0.35 px) read back on 64 CBSD432 photos (321 x 481 JPEGs), read as train reads
them (256-px centre crops) and, for comparison, whole. The estimator's one-off calibration is run
first, untimed: train has run it for the noisy folder's fit by then.

    python benchmarks/readback_time.py
"""

from __future__ import annotations

import time

from new_domain import DATA  # benchmarks/ is on the path when a script here runs

from invrep_cli.blur_readback import READBACK_IMAGES, readback_crop, unblur_white
from invrep_cli.data import list_images
from invrep_cli.noise import ImageNoise, NoiseModel, fit_image_noise
from invrep_cli.training.noise_setup import read_some

EYE = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def main() -> None:
    files = list_images(DATA / "CBSD432")
    fit = ImageNoise((0.75 * (20 / 255) ** 2 / 0.5,) * 3, (0.25 * (20 / 255) ** 2,) * 3, 0.35, EYE)
    model = NoiseModel(fitted=(fit,) * 5)
    _, whole = read_some(files, READBACK_IMAGES, print, "whole")
    fit_image_noise(whole[0])  # the calibration, cached
    for name, crop in (("256-px centre crops (train)", readback_crop), ("whole photos", None)):
        start = time.perf_counter()
        _, images = read_some(files, READBACK_IMAGES, print, name, crop=crop)
        _, note = unblur_white(model, images)
        print(f"{name}: {time.perf_counter() - start:.1f} s ({note})")


if __name__ == "__main__":
    main()
