"""`invrep demo`: noisy sample photos (shipped inside scikit-image, so it works offline), restored with
the bundled weights, and a side-by-side comparison image (noisy | restored | clean, with PSNR).

Besides the photos with Gaussian noise, two rows show what users meet most: a **clean** photo
given as it is (a good denoiser leaves it nearly unchanged: its PSNR against itself is the score),
and, where the project's benchmark images sit beside the checkout (``../shared/data/CC15``), a crop
of a **real** camera-noise photo with its multi-shot mean as the reference. Without them that row
is left out and the demo still runs offline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from invrep_cli.synthetic import add_noise, psnr, read_uint8, sample_photos

#: scikit-image sample photos used by the demo (none of them is in any training or test set we use)
SAMPLES = ("astronaut", "coffee", "chelsea")
#: a clean photo given to the model as it is
CLEAN_SAMPLE = "rocket"
#: a real noisy photo and its reference (CC15, Nam et al.), when the benchmark data is beside the checkout
REAL_PAIR = ("5dmark3_iso3200_1_real.png", "5dmark3_iso3200_1_mean.png")
REAL_CROP = 256


@dataclass
class DemoSample:
    name: str
    clean: Path
    noisy: Path


def sample_images(names: tuple[str, ...] = SAMPLES) -> dict[str, np.ndarray]:
    """uint8 RGB sample photos from skimage.data (bundled with the package, no download)."""
    return {name: img if img.ndim == 3 else np.dstack([img] * 3) for name, img in sample_photos(names)}


def real_pair(data_dir: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(noisy, reference) centre crops of the CC15 demo pair, or None when the data is not there."""
    if data_dir is None:
        return None
    paths = [data_dir / "CC15" / name for name in REAL_PAIR]
    if not all(p.is_file() for p in paths):
        return None
    noisy, ref = (read_uint8(p) for p in paths)
    top, left = ((n - REAL_CROP) // 2 for n in noisy.shape[:2])
    return tuple(a[top : top + REAL_CROP, left : left + REAL_CROP] for a in (noisy, ref))  # type: ignore[return-value]


def default_data_dir() -> Path:
    """``../shared/data`` beside the checkout, where this project's benchmark images live."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def make_samples(out_dir: Path, sigma: float = 25.0, seed: int = 0, data_dir: Path | None = None) -> list[DemoSample]:
    """Write clean/ and noisy/ PNGs under ``out_dir``: the Gaussian-noise photos, the clean photo
    (its noisy file is the clean photo itself) and, when ``data_dir`` holds CC15, the real pair."""
    inputs = [(f"{name}-sigma{sigma:g}", clean, add_noise(clean, sigma, seed + i))
              for i, (name, clean) in enumerate(sample_images().items())]
    clean_photo = sample_images((CLEAN_SAMPLE,))[CLEAN_SAMPLE]
    inputs.append((f"{CLEAN_SAMPLE}-clean", clean_photo, clean_photo))
    pair = real_pair(data_dir)
    if pair is not None:
        inputs.append(("cc15-real", pair[1], pair[0]))
    samples = []
    for name, clean, noisy in inputs:
        clean_path = out_dir / "clean" / f"{name}.png"
        noisy_path = out_dir / "noisy" / f"{name}.png"
        clean_path.parent.mkdir(parents=True, exist_ok=True)
        noisy_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(clean).save(clean_path)
        Image.fromarray(noisy).save(noisy_path)
        samples.append(DemoSample(name, clean_path, noisy_path))
    return samples


def labelled_row(
    panels: Sequence[tuple[str, np.ndarray]], height: int, resample: Image.Resampling = Image.Resampling.LANCZOS,
    font_size: int | None = None,
) -> Image.Image:
    """uint8 images side by side, each resized to ``height`` and labelled at its top left
    (``font_size``: Pillow's scalable default font at that size; None: its small bitmap font)."""
    from PIL import ImageFont

    font = ImageFont.load_default(font_size) if font_size else None
    row_panels = []
    for label, arr in panels:
        pil = Image.fromarray(arr).convert("RGB")
        pil = pil.resize((round(pil.width * height / pil.height), height), resample)
        draw = ImageDraw.Draw(pil)
        # yellow on a dark box: readable over bright sky and dark shadow alike
        draw.rectangle(draw.textbbox((6, 6), label, font=font), fill=(0, 0, 0))
        draw.text((6, 6), label, fill=(255, 255, 0), font=font)
        row_panels.append(pil)
    row = Image.new("RGB", (sum(p.width for p in row_panels), height))
    x = 0
    for p in row_panels:
        row.paste(p, (x, 0))
        x += p.width
    return row


def comparison_image(samples: list[DemoSample], restored_dir: Path, out_path: Path, height: int = 256) -> list[dict]:
    """Rows of noisy | restored | clean, each labelled with its PSNR against clean; returns the PSNRs."""
    rows, scores = [], []
    for s in samples:
        clean, noisy, restored = (read_uint8(path) for path in (s.clean, s.noisy, restored_dir / s.noisy.name))
        psnr_noisy, psnr_restored = psnr(clean, noisy), psnr(clean, restored)
        clean_input = s.name.endswith("-clean")  # its own reference: the score is how little changed
        scores.append({"image": s.name, "psnr_noisy": round(psnr_noisy, 2), "psnr_restored": round(psnr_restored, 2),
                       "clean_input": clean_input})
        if clean_input:
            given, reference = "clean input", "clean"
        else:
            given = f"noisy {psnr_noisy:.2f} dB"
            reference = "reference (mean of many shots)" if s.name.endswith("-real") else "clean"
        rows.append(labelled_row([(given, noisy), (f"invrep {psnr_restored:.2f} dB", restored), (reference, clean)],
                                 height))
    sheet = Image.new("RGB", (max(r.width for r in rows), height * len(rows)))
    for i, r in enumerate(rows):
        sheet.paste(r, (0, i * height))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path)
    return scores
