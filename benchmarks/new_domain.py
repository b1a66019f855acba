"""A noise domain no bundled model was trained on, to check issue 20's promise that
`invrep train --noisy A --clean B --out R --time 20m` (nothing else) beats the bundled default on A's
kind of noise.

The noise stands in for a scientific camera (microscope, low-light sensor): gray, signal-dependent
(75 % of its variance at mid-gray is shot noise), std 20 (0-255) at mid-gray and **spatially
correlated** (white noise blurred by a Gaussian of 0.9 px, rescaled to keep its variance). No
bundled model saw correlated noise at this level: the `own` camera noise of `lir-unet-mix` is
correlated but about 8x fainter, its Gaussian and Poisson-Gaussian components are white.

    python benchmarks/new_domain.py OUT [--noise correlated|white|banding|fluorescence] [--std 20]
writes OUT/noisy (Train400 images 1-200 with the noise: what a user has), OUT/clean (Train400
images 201-400 as they are: other scenes, never matched) and OUT/test (BSD68, a test set, with the
same noise as NAME_real.png beside NAME_mean.png for `invrep bench --pairs`; scoring only, never
training or choosing) and OUT/held (the same pairs from the CBSD432 photos that no Train400 image was
cropped from, gray 256-px centre crops: held out from the training folders, so a choice of
training settings may look at them).

``--noise white`` is the same noise without the blur: white, signal-dependent and Gaussian, the
kind of folder on which the counted-photons test must not count (README, Round WHITE).
``--std 50`` makes either noise heavy: at std 50 of 255 nearly every 16-px block of a photo holds a
clipped pixel, which the fit could not read before Round HEAVY (README).

``--noise banding`` makes a noise the fitted noise model cannot draw, for issue 20's question of
whether stage 2 learns what the fit gets wrong: white signal-dependent noise (std 12 at mid-gray)
plus column banding, an offset of std 6 added to every pixel of a column and drawn afresh for each
image (a CMOS sensor's column read-out noise). The fit knows only isotropic correlation.

``--noise fluorescence`` makes every photo, clean and noisy alike, a microscope's dark field with
bright structures, and the noise a short exposure's few photons plus read noise (README, Round FLUO):
discrete and skewed in the dark, with a black level, which the fit's Gaussian cannot draw.
``--photons`` sets the photons its brightest structures collect, ``--bright`` their level (0-1): a dim
sample (``--bright 0.25``) keeps its few photons in a quarter of the 8-bit range. ``--bits 16`` writes
16-bit files, as a scientific camera's counts are kept (``--bright 0.05 --offset 0.0015 --read 0.0005``:
a 12-bit camera's range, black level 100 counts).
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def as_8bit(image: np.ndarray) -> np.ndarray:
    """[0, 1] values clipped and rounded to 8 bits, as a saved file holds them."""
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


#: bits of the saved files (``--bits 16``, fluorescence only: a scientific camera's counts in 16-bit PNGs)
BITS = 8


def as_saved(image: np.ndarray) -> np.ndarray:
    """[0, 1] values as a file of BITS bits holds them."""
    if BITS == 8:
        return as_8bit(image)
    return np.round(np.clip(image, 0.0, 1.0) * 65535).astype(np.uint16)


#: std at mid-gray (0-1 scale), the shot share of the variance there, the noise field's blur (px)
STD, SHOT, BLUR = 20 / 255, 0.75, 0.9


def correlated_noise(image: np.ndarray, rng: np.random.Generator, blur: float = BLUR) -> np.ndarray:
    """``image`` (H x W in [0, 1]) with the domain's noise, quantised to 8 bits (``blur`` 0: white)."""
    field = rng.standard_normal(image.shape).astype(np.float32)
    if blur > 0:
        field = cv2.GaussianBlur(field, (0, 0), blur, borderType=cv2.BORDER_REFLECT)
        # the blurred field's std is the 2-D kernel's norm, which for a separable Gaussian k k^T is
        # sum(k^2): divide by it to get unit variance back
        kernel = cv2.getGaussianKernel(int(2 * np.ceil(3 * blur) + 1), blur)
        field /= float((kernel**2).sum())
    gain, floor = SHOT * STD**2 / 0.5, (1 - SHOT) * STD**2
    noisy = image + np.sqrt(gain * image + floor) * field
    return as_8bit(noisy)


#: banding: white std at mid-gray and the column offsets' std (0-1 scale)
WHITE, COLUMN = 12 / 255, 6 / 255


def banding_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (H x W in [0, 1]) with white signal-dependent noise and column banding, 8 bits."""
    gain, floor = SHOT * WHITE**2 / 0.5, (1 - SHOT) * WHITE**2
    white = np.sqrt(gain * image + floor) * rng.standard_normal(image.shape)
    columns = COLUMN * rng.standard_normal((1, image.shape[1]))
    return as_8bit(image + white + columns)


#: fluorescence: the camera offset and read-noise std (0-1 scale), the photons a pixel at full scale
#: collects, and the gamma and scale that make a photo a mostly dark field with bright structures
OFFSET, READ, PEAK, GAMMA, BRIGHT = 4 / 255, 2 / 255, 30.0, 2.5, 0.8


def fluorescence_scene(image: np.ndarray) -> np.ndarray:
    """A photo as a fluorescence image's mean: mostly dark, bright structures, on the camera offset
    (what a long average of a sample records)."""
    return OFFSET + BRIGHT * image**GAMMA


def fluorescence_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (a fluorescence_scene) as one short exposure: photon counts at PEAK photons full
    scale (a few photons in the dark field, so the noise is discrete and skewed there, not Gaussian),
    plus read noise, quantised to 8 bits."""
    photons = rng.poisson(np.maximum(image - OFFSET, 0.0) * PEAK / BRIGHT) * BRIGHT / PEAK
    noisy = OFFSET + photons + READ * rng.standard_normal(image.shape)
    return as_saved(noisy)


def read_gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0


def read_fluorescence_scene(path: Path) -> np.ndarray:
    """A photo made a fluorescence scene, quantised to BITS bits as its long average would be saved."""
    return as_saved(fluorescence_scene(read_gray(path))).astype(np.float32) / (2**BITS - 1)


def main() -> None:
    global PEAK, BRIGHT, OFFSET, READ, BITS, STD
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--noise", choices=("correlated", "white", "banding", "fluorescence"), default="correlated")
    parser.add_argument(
        "--photons", type=float, default=PEAK, help="fluorescence: photons the brightest structures collect (PEAK)"
    )
    parser.add_argument(
        "--bright", type=float, default=BRIGHT, help="fluorescence: the brightest structures' level, 0-1 (BRIGHT)"
    )
    parser.add_argument("--offset", type=float, default=OFFSET, help="fluorescence: the camera's black level, 0-1")
    parser.add_argument("--read", type=float, default=READ, help="fluorescence: the read noise's std, 0-1")
    parser.add_argument("--bits", type=int, choices=(8, 16), default=BITS, help="fluorescence: bits of the files")
    parser.add_argument(
        "--std", type=float, default=STD * 255, help="correlated and white: the std at mid-gray, 0-255 (heavy: 50)"
    )
    args = parser.parse_args()
    fluorescence = args.noise == "fluorescence"
    PEAK, BRIGHT, OFFSET, READ, STD = args.photons, args.bright, args.offset, args.read, args.std / 255
    BITS = args.bits if fluorescence else 8  # the other noises are saved in 8 bits (as_8bit)
    add_noise = {
        "white": functools.partial(correlated_noise, blur=0.0),
        "banding": banding_noise,
        "fluorescence": fluorescence_noise,
    }.get(args.noise, correlated_noise)
    # the scene itself: fluorescence turns each photo into a dark field first, clean and noisy alike
    read_scene = read_fluorescence_scene if fluorescence else read_gray
    train = sorted((DATA / "Train400").glob("*.png"))
    test = sorted((DATA / "BSD68").glob("*.png"))
    for sub in ("noisy", "clean", "test"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    for k, path in enumerate(train[:200]):
        noisy = add_noise(read_scene(path), np.random.default_rng([2026, 1, k]))
        Image.fromarray(noisy).save(args.out / "noisy" / path.name)
    for path in train[200:]:
        dst = args.out / "clean" / path.name
        if fluorescence:
            Image.fromarray(as_saved(read_scene(path))).save(dst)
        elif not dst.exists():
            os.symlink(path, dst)
    for k, path in enumerate(test):
        clean = read_scene(path)
        noisy = add_noise(clean, np.random.default_rng([2026, 2, k]))
        Image.fromarray(noisy).save(args.out / "test" / f"{path.stem}_real.png")
        Image.fromarray(as_saved(clean)).save(args.out / "test" / f"{path.stem}_mean.png")
    sources = {line.split()[1] for line in (DATA / "Train400_crop_sources.txt").read_text().splitlines()[1:]}
    held = [p for p in sorted((DATA / "CBSD432").glob("*.jpg")) if p.name not in sources]
    (args.out / "held").mkdir(exist_ok=True)
    for k, path in enumerate(held):
        clean = read_scene(path)
        top, left = (clean.shape[0] - 256) // 2, (clean.shape[1] - 256) // 2
        clean = clean[top : top + 256, left : left + 256]
        noisy = add_noise(clean, np.random.default_rng([2026, 3, k]))
        Image.fromarray(noisy).save(args.out / "held" / f"{path.stem}_real.png")
        Image.fromarray(as_saved(clean)).save(args.out / "held" / f"{path.stem}_mean.png")
    print(f"wrote {args.out}: 200 noisy, 200 clean, {len(test)} test pairs, {len(held)} held-out pairs")


if __name__ == "__main__":
    main()
