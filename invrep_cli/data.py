"""Unpaired training data: folder scanning, image reading, random crops and flips, synthetic noise.

Every random choice a training sample needs (which noisy and which clean file, where to crop,
whether to flip, the synthetic noise) is drawn from a generator seeded by ``(seed, k)`` where ``k``
is the sample's global index (``step * global_batch + rank * batch + i``). The data order therefore
depends on the step alone: resuming at step ``s`` sees exactly the batches an uninterrupted run
would, whatever the number of DataLoader workers, and DistributedDataParallel ranks get disjoint
sample indices without a sampler that must be saved.

Images are returned as float32 C x H x W tensors in [-1, 1], the range the networks train in (the
authors fed [0, 1] images to decoders ending in tanh). Unlike the authors' loader, every common
format is read (not only ``*.jpg``), 16-bit files keep their precision, and large images are not
skipped: a random crop is taken from any image at least as big as the crop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from invrep_cli.errors import DataError, ImageError, UsageError
from invrep_cli.imageio import IMAGE_SUFFIXES

#: decoded training images kept in memory per data-loading process (float32 values: 4 bytes each)
CACHE_PIXELS = 300_000_000

# the same formats restore reads (one list, in imageio)
IMAGE_EXTENSIONS = frozenset(IMAGE_SUFFIXES)

WarnFn = Callable[[str], None]


def _no_warn(message: str) -> None:
    del message


# ---------------------------------------------------------------------------------------------
# files and images


def list_images(folder: str | Path, what: str = "image folder") -> list[Path]:
    """Every image file under ``folder`` (recursive), sorted; DataError if there is none."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{what} does not exist: {folder}")
    if not folder.is_dir():
        raise DataError(f"{what} is not a folder: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        anything = any(folder.iterdir())
        reason = "has no image files" if anything else "is empty"
        raise DataError(f"{what} {folder} {reason} (looked recursively for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def read_image(path: str | Path) -> np.ndarray:
    """An image file as float32 H x W x 3 RGB in [0, 1], read the way restore reads it
    (``imageio``: EXIF orientation applied, the one pixel limit, 16-bit kept, palette/CMYK
    converted; Pillow decodes, so a TIFF's unknown tags raise no OpenCV warnings).

    Gray is replicated to RGB (training sees three channels) and alpha dropped. Raises
    ``ImageError`` (naming the file and the reason) when the file cannot be decoded.
    """
    from invrep_cli.imageio import read_image as read_loaded

    pixels = read_loaded(path).pixels
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels)


#: a JPEG's blocks are 8 x 8 (16 x 16 with chroma subsampling): a crop whose corner lies on this grid
#: keeps them where the noise estimator's 16-px blocks expect them
JPEG_GRID = 16


def centre_crop(img: np.ndarray, size: int, grid: int = 1) -> np.ndarray:
    """The centre ``size`` x ``size`` of an image (all of a smaller side), its corner moved back onto
    a multiple of ``grid``, as a copy: a view would keep the whole image's memory alive."""
    h, w = img.shape[:2]
    top, left = ((h - min(size, h)) // 2) // grid * grid, ((w - min(size, w)) // 2) // grid * grid
    return img[top : top + size, left : left + size].copy()


@dataclass(frozen=True)
class ImageEntry:
    path: Path
    height: int
    width: int


def scan_images(paths: Sequence[Path], min_size: int, what: str, warn: WarnFn = _no_warn) -> list[ImageEntry]:
    """Decode every file once: unreadable files and images smaller than ``min_size`` on either side
    are skipped with a warning naming them; DataError if nothing usable remains."""
    entries: list[ImageEntry] = []
    too_small: list[str] = []
    for path in paths:
        try:
            img = read_image(path)
        except Exception as exc:  # any decoder failure means "skip this file", never "stop training"
            warn(f"skipping unreadable image {exc}" if isinstance(exc, ImageError) else f"skipping {path}: {exc}")
            continue
        h, w = img.shape[:2]
        if h < min_size or w < min_size:
            too_small.append(f"{path} ({w}x{h})")
            continue
        entries.append(ImageEntry(Path(path), h, w))
    if too_small:
        shown = ", ".join(too_small[:5]) + (f" and {len(too_small) - 5} more" if len(too_small) > 5 else "")
        warn(f"skipping {len(too_small)} {what} image(s) smaller than the {min_size}x{min_size} crop: {shown}")
    if not entries:
        reason = f"none of its {len(paths)} image(s) is at least {min_size}x{min_size} and readable"
        raise DataError(f"{what}: {reason}; use a smaller --crop-size or other images")
    return entries


# ---------------------------------------------------------------------------------------------
# synthetic noise


@dataclass(frozen=True)
class NoiseSpec:
    """``gaussian`` with sigma in [low, high] on the 0-255 scale (low == high: fixed sigma, else
    drawn uniformly per image: blind denoising), ``poisson`` with ``low`` = peak photon count, or
    ``poisson-gaussian`` with the std at mid-gray in [low, high] (0-255), a random share of its
    variance signal-dependent (shot noise) and the rest constant (read noise), per image, or
    ``correlated``: the same, spatially correlated (``CORRELATED_BLUR``)."""

    kind: str
    low: float
    high: float

    def describe(self) -> str:
        if self.kind == "poisson":
            return f"poisson:{self.low:g}"
        if self.kind in ("poisson-gaussian", "correlated"):
            return f"{self.kind}:{self.low:g}-{self.high:g}"
        return f"gaussian:{self.low:g}" if self.low == self.high else f"gaussian:{self.low:g}-{self.high:g}"


def parse_noise(spec: str) -> NoiseSpec:
    """``gaussian:25``, ``gaussian:5-50``, ``poisson:30``, ``poisson-gaussian:2-40`` or
    ``correlated:5-40`` -> NoiseSpec; UsageError otherwise."""
    m = re.fullmatch(
        r"\s*(gaussian|poisson-gaussian|poisson|correlated)\s*:\s*([0-9.]+)\s*(?:-\s*([0-9.]+))?\s*", spec.lower()
    )
    if not m:
        raise UsageError(
            f"--synthetic {spec!r}: expected gaussian:SIGMA, gaussian:LOW-HIGH, poisson:PEAK, "
            "poisson-gaussian:LOW-HIGH or correlated:LOW-HIGH"
        )
    kind = m.group(1)
    try:
        low = float(m.group(2))
        high = float(m.group(3)) if m.group(3) else low
    except ValueError:
        raise UsageError(f"--synthetic {spec!r}: not a number") from None
    if kind == "poisson" and m.group(3):
        raise UsageError(f"--synthetic {spec!r}: poisson takes one peak value")
    if low < 0 or high < low or (kind == "poisson" and low <= 0):
        raise UsageError(f"--synthetic {spec!r}: values must be positive and LOW <= HIGH")
    return NoiseSpec(kind, low, high)


#: poisson-gaussian specs: the share of the variance at mid-gray that is shot noise (proportional to
#: the signal) is drawn uniformly in this range per image; the rest is signal-independent read noise
SHOT_SHARE = (0.3, 1.0)
#: correlated specs: poisson-gaussian noise whose field is blurred by a Gaussian of this std (px,
#: drawn uniformly per image) and rescaled to keep its variance: demosaicing, binning, scientific
#: cameras' interpolation, noise that a white-noise model never shows a restorer
CORRELATED_BLUR = (0.4, 1.5)


def add_noise(clean: np.ndarray, spec: NoiseSpec, rng: np.random.Generator) -> np.ndarray:
    """Noise as a saved noisy file would hold it: added in [0, 1], clipped, quantised to 8 bit."""
    if spec.kind == "gaussian":
        sigma = spec.low if spec.low == spec.high else rng.uniform(spec.low, spec.high)
        noisy = clean + rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(sigma / 255.0)
    elif spec.kind == "poisson-gaussian":
        std_mid, shot = rng.uniform(spec.low, spec.high) / 255.0, rng.uniform(*SHOT_SHARE)
        var = std_mid**2 * (shot * np.clip(clean.astype(np.float64), 0.0, 1.0) / 0.5 + (1.0 - shot))
        noisy = clean + (np.sqrt(var) * rng.standard_normal(clean.shape)).astype(np.float32)
    elif spec.kind == "correlated":
        from invrep_cli.noise import sample_spec  # noise.py builds on this module

        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        chw = torch.from_numpy(np.ascontiguousarray(np.atleast_3d(clean).transpose(2, 0, 1)))[None].float()
        noisy = sample_spec(chw, spec, generator)[0].numpy().transpose(1, 2, 0).reshape(clean.shape)
    else:
        noisy = rng.poisson(clean.astype(np.float64) * spec.low).astype(np.float32) / np.float32(spec.low)
    return (np.round(np.clip(noisy, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def split_halves(paths: Sequence[Path], seed: int) -> tuple[list[Path], list[Path]]:
    """Two disjoint halves of a sorted file list, chosen by ``seed``: (clean half, noisy half)."""
    ordered = sorted(paths)
    if len(ordered) < 2:
        raise DataError(f"--synthetic needs at least 2 clean images to split into two halves, found {len(ordered)}")
    perm = np.random.default_rng(seed).permutation(len(ordered))
    half = len(ordered) // 2
    clean = sorted(ordered[i] for i in perm[:half])
    noisy = sorted(ordered[i] for i in perm[half:])
    return clean, noisy


# ---------------------------------------------------------------------------------------------
# datasets


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """H x W x 3 in [0, 1] -> 3 x H x W in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))) * 2.0 - 1.0


class UnpairedCrops(torch.utils.data.Dataset):
    """Sample ``k`` -> (noisy crop, clean crop), both 3 x crop x crop in [-1, 1].

    Each domain is walked in a fresh seeded permutation per pass over its files, so every file is
    seen once per pass; the two domains are unpaired and of any sizes.
    """

    def __init__(
        self,
        noisy: Sequence[ImageEntry],
        clean: Sequence[ImageEntry],
        crop_size: int,
        seed: int,
        noise: NoiseSpec | None = None,
        flip: bool = True,
    ) -> None:
        self.noisy = list(noisy)
        self.clean = list(clean)
        self.crop_size = crop_size
        self.seed = seed
        self.noise = noise
        self.flip = flip
        self._cache: dict[Path, np.ndarray] = {}
        self._cached_pixels = 0

    def __len__(self) -> int:
        # sample indices are unbounded; the step sampler decides which ones are asked for
        return 2**62

    def _pick(self, entries: list[ImageEntry], domain: int, k: int) -> ImageEntry:
        n = len(entries)
        epoch, pos = divmod(k, n)
        perm = np.random.default_rng([self.seed, domain, epoch]).permutation(n)
        return entries[int(perm[pos])]

    def _image(self, entry: ImageEntry) -> np.ndarray:
        """Decoded once per worker process and kept: decoding a JPEG per crop cost more than a
        small restorer's training step. Capped at ``CACHE_PIXELS`` per process."""
        img = self._cache.get(entry.path)
        if img is None:
            img = read_image(entry.path)
            if self._cached_pixels + img.size <= CACHE_PIXELS:
                self._cache[entry.path] = img
                self._cached_pixels += img.size
        return img

    def _crop(self, entry: ImageEntry, rng: np.random.Generator) -> np.ndarray:
        img = self._image(entry)
        h, w = img.shape[:2]
        c = self.crop_size
        top = int(rng.integers(0, h - c + 1))
        left = int(rng.integers(0, w - c + 1))
        crop = img[top : top + c, left : left + c]
        if self.flip and rng.random() < 0.5:
            crop = crop[:, ::-1]
        return np.ascontiguousarray(crop)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 2, k])
        noisy = self._crop(self._pick(self.noisy, 0, k), rng)
        if self.noise is not None:
            noisy = add_noise(noisy, self.noise, rng)
        clean = self._crop(self._pick(self.clean, 1, k), rng)
        return to_tensor(noisy), to_tensor(clean)


class StepBatches(torch.utils.data.Sampler):
    """Batches of global sample indices for steps ``start_step + 1 .. total_steps`` of one rank."""

    def __init__(self, start_step: int, total_steps: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.start_step = start_step
        self.total_steps = total_steps
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        global_batch = self.batch_size * self.world_size
        for step in range(self.start_step, self.total_steps):
            first = step * global_batch + self.rank * self.batch_size
            yield list(range(first, first + self.batch_size))


@dataclass
class ValPair:
    name: str
    noisy: np.ndarray  # H x W x 3 in [0, 1]
    clean: np.ndarray


def _stem_key(path: Path, root: Path) -> str:
    return str(path.relative_to(root).with_suffix("")).replace("\\", "/")


def load_validation(
    noisy_dir: str | None,
    clean_dir: str | None,
    noise: NoiseSpec | None,
    seed: int,
    warn: WarnFn = _no_warn,
) -> list[ValPair]:
    """Paired validation images matched by relative path (extension ignored), or clean images with
    synthetic noise made with a fixed seed per image. Empty when no validation is asked for."""
    if clean_dir is None:
        if noisy_dir is not None:
            raise UsageError("--val-noisy needs --val-clean (the matching clean images)")
        return []
    clean_root = Path(clean_dir)
    clean_files = list_images(clean_root, "--val-clean folder")
    pairs: list[ValPair] = []
    if noisy_dir is None:
        if noise is None:
            raise UsageError("--val-clean alone needs --synthetic to make the noisy images; or give --val-noisy")
        for i, path in enumerate(clean_files):
            try:
                clean = read_image(path)
            except Exception as exc:
                warn(f"skipping unreadable validation image {path}: {exc}")
                continue
            noisy = add_noise(clean, noise, np.random.default_rng([seed, 3, i]))
            pairs.append(ValPair(_stem_key(path, clean_root), noisy, clean))
    else:
        noisy_root = Path(noisy_dir)
        noisy_by_key = {_stem_key(p, noisy_root): p for p in list_images(noisy_root, "--val-noisy folder")}
        for path in clean_files:
            key = _stem_key(path, clean_root)
            match = noisy_by_key.get(key)
            if match is None:
                warn(f"validation: no noisy image matches {path.relative_to(clean_root)}; skipped")
                continue
            try:
                clean, noisy = read_image(path), read_image(match)
            except Exception as exc:
                warn(f"skipping unreadable validation pair {key}: {exc}")
                continue
            if clean.shape != noisy.shape:
                warn(f"validation: {key} noisy {noisy.shape[:2]} and clean {clean.shape[:2]} differ in size; skipped")
                continue
            pairs.append(ValPair(key, noisy, clean))
    if not pairs:
        raise DataError(f"no usable validation pairs in {clean_dir}")
    return pairs


@dataclass
class TrainData:
    """What the trainer needs from the folders, all checked before training starts."""

    dataset: UnpairedCrops
    validation: list[ValPair]
    noisy_count: int
    clean_count: int
    description: str


def prepare_data(
    *,
    clean_dir: str,
    noisy_dir: str | None,
    synthetic: str | None,
    crop_size: int,
    seed: int,
    val_noisy_dir: str | None = None,
    val_clean_dir: str | None = None,
    warn: WarnFn = _no_warn,
) -> TrainData:
    """Scan and check every folder; DataError / UsageError (exit 2) before any training work."""
    if noisy_dir is not None and synthetic is not None:
        raise UsageError("give either --noisy DIR or --synthetic SPEC, not both")
    if noisy_dir is None and synthetic is None:
        raise UsageError("give --noisy DIR (unpaired noisy images) or --synthetic SPEC (noise made from --clean)")
    if crop_size < 1:
        raise UsageError(f"--crop-size must be positive, got {crop_size}")
    noise = parse_noise(synthetic) if synthetic is not None else None
    clean_files = list_images(clean_dir, "--clean folder")
    if noise is not None:
        clean_half, noisy_half = split_halves(clean_files, seed)
        clean = scan_images(clean_half, crop_size, "clean half of --clean", warn)
        noisy = scan_images(noisy_half, crop_size, "noisy half of --clean", warn)
        desc = (
            f"{len(noisy)} noisy ({noise.describe()} on one half of {clean_dir}) / {len(clean)} clean (the other half)"
        )
    else:
        assert noisy_dir is not None
        noisy_files = list_images(noisy_dir, "--noisy folder")
        noisy = scan_images(noisy_files, crop_size, "--noisy", warn)
        clean = scan_images(clean_files, crop_size, "--clean", warn)
        desc = f"{len(noisy)} noisy ({noisy_dir}) / {len(clean)} clean ({clean_dir})"
    validation = load_validation(val_noisy_dir, val_clean_dir, noise, seed, warn)
    dataset = UnpairedCrops(noisy, clean, crop_size, seed, noise)
    return TrainData(dataset, validation, len(noisy), len(clean), desc)


def min_crop_for(disc_scales: int, disc_layers: int) -> int:
    """Smallest crop the image discriminators accept: every scale halves the image and every
    stride-2 layer halves it again, and the last layer needs at least one pixel."""
    return 2**disc_layers * 2 ** max(0, disc_scales - 1)
