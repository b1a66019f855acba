"""Clean images, seeded 8-bit Gaussian noise and PSNR/SSIM: what ``invrep bench`` scores and
``invrep demo`` shows, in one place.

The noise is what a saved noisy file holds: ``clip(round(clean + N(0, sigma)), 0, 255)`` on the
0-255 scale, seeded so the same (clean, sigma, seed) always gives the same image. (Training draws
its own noise in ``data``, on float images, from a noise spec.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from invrep_cli.errors import DataError
from invrep_cli.imageio import IMAGE_SUFFIXES, image_files

#: shipped inside scikit-image, so a bench or demo without a folder runs offline anywhere
SAMPLE_IMAGES = ("astronaut", "coffee", "chelsea", "camera")
#: the PSNR of identical images (8-bit: one grey level off in one pixel of 64 MP is still below it)
MAX_PSNR = 100.0
#: SSIM's 7x7 window needs at least 7 pixels a side
MIN_SIDE = 7


def add_noise(clean: np.ndarray, sigma: float, seed: int | Sequence[int]) -> np.ndarray:
    """uint8 clean image -> uint8 noisy image: clip(round(clean + N(0, sigma)), 0, 255).

    The same (clean, sigma, seed) always gives the same noisy image; quantising to 8 bit makes it
    what a real noisy file would hold (the clipping matters at sigma 50 near black and white).
    """
    if clean.dtype != np.uint8:
        raise ValueError(f"clean image must be uint8, got {clean.dtype}")
    rng = np.random.default_rng(seed)
    noisy = clean.astype(np.float64) + rng.normal(0.0, float(sigma), clean.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def noise_seed(seed: int, image_index: int, sigma: float) -> list[int]:
    """Seed for one image at one sigma: independent across images and sigmas, fixed by ``seed``."""
    return [int(seed), int(image_index), int(round(float(sigma) * 1000))]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float image -> uint8, rounded and clipped as writing an 8-bit file would."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def psnr(clean: np.ndarray, test: np.ndarray) -> float:
    """PSNR of two uint8 images of the same shape with scikit-image, data range 255."""
    from skimage.metrics import peak_signal_noise_ratio

    if clean.shape != test.shape:
        raise ValueError(f"shape mismatch: clean {clean.shape} vs test {test.shape}")
    if np.array_equal(clean, test):
        return MAX_PSNR  # identical (a clean image left as it is at sigma 0): JSON has no infinity
    return float(peak_signal_noise_ratio(clean, test, data_range=255))


def image_metrics(clean: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """(PSNR, SSIM) of two uint8 images (H x W or H x W x 3) with scikit-image, data range 255."""
    from skimage.metrics import structural_similarity

    score = psnr(clean, test)
    channel_axis = -1 if clean.ndim == 3 else None
    ssim = float(structural_similarity(clean, test, data_range=255, channel_axis=channel_axis))
    return score, ssim


def as_uint8_array(image: Any, gray: bool) -> np.ndarray:
    """PIL image -> uint8 H x W (gray) or H x W x 3 (colour); orientation applied, alpha dropped,
    16-bit scaled to 8 (the bench scores 8-bit files)."""
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):
        arr = np.asarray(image).astype(np.float64)
        if arr.max() > 255:
            arr = arr / 257.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return arr[..., 0] if arr.ndim == 3 else arr
    if gray or image.mode in ("L", "LA", "1"):
        return np.asarray(image.convert("L"))
    return np.asarray(image.convert("RGB"))


def load_clean_images(
    clean_dir: str | os.PathLike[str] | None, limit: int | None = None, gray: bool = False
) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """[(name, uint8 image)] from a folder (sorted, recursive) or scikit-image's sample photos.

    Returns the images and notes about files left out (unreadable or smaller than SSIM's window).
    """
    notes: list[str] = []
    images: list[tuple[str, np.ndarray]] = []
    if clean_dir is None:
        return sample_photos(SAMPLE_IMAGES[:limit], gray), notes

    from PIL import UnidentifiedImageError

    root = Path(clean_dir)
    if not root.is_dir():
        raise DataError(f"clean image folder not found: {root}")
    files = image_files(root)
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root}")
    for path in files:
        if limit is not None and len(images) >= limit:
            break
        try:
            arr = read_uint8(path, gray)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            notes.append(f"{path}: left out, cannot be read ({exc})")
            continue
        if min(arr.shape[:2]) < MIN_SIDE:
            notes.append(f"{path}: left out, smaller than {MIN_SIDE} pixels a side (SSIM window)")
            continue
        images.append((str(path.relative_to(root)), arr))
    if not images:
        raise DataError(f"no usable images in {root}: " + "; ".join(notes))
    return images, notes


def read_uint8(path: str | os.PathLike[str], gray: bool = False) -> np.ndarray:
    """One image file as uint8 H x W x 3 (or H x W when ``gray`` or the file is gray).

    Images over the pixel limit (``imageio.MAX_PIXELS``) are refused with ValueError, worded as
    restore words it: Pillow's own limit is off (see imageio)."""
    from PIL import Image

    from invrep_cli import imageio

    with Image.open(path) as im:
        width, height = im.size
        if width * height > imageio.MAX_PIXELS:
            limit = imageio.pixel_limit_text()
            raise ValueError(f"{width}x{height} is over the {limit} decompression-bomb limit")
        return as_uint8_array(im, gray)


def sample_photos(names: Sequence[str] = SAMPLE_IMAGES, gray: bool = False) -> list[tuple[str, np.ndarray]]:
    """[(name, uint8 image)] of scikit-image's bundled photos (no download)."""
    import skimage.data
    from PIL import Image

    return [(name, as_uint8_array(Image.fromarray(getattr(skimage.data, name)()), gray)) for name in names]
