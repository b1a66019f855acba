"""`invrep demo`: noisy sample photos (shipped inside scikit-image, so it works offline), restored with
the bundled weights, and a side-by-side comparison image (noisy | restored | clean, with PSNR)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from invrep_cli.synthetic import add_noise, psnr, read_uint8, sample_photos

#: scikit-image sample photos used by the demo (none of them is in any training or test set we use)
SAMPLES = ("astronaut", "coffee", "chelsea")


@dataclass
class DemoSample:
    name: str
    clean: Path
    noisy: Path


def sample_images(names: tuple[str, ...] = SAMPLES) -> dict[str, np.ndarray]:
    """uint8 RGB sample photos from skimage.data (bundled with the package, no download)."""
    return {name: img if img.ndim == 3 else np.dstack([img] * 3) for name, img in sample_photos(names)}


def make_samples(out_dir: Path, sigma: float = 25.0, seed: int = 0) -> list[DemoSample]:
    """Write clean/ and noisy/ PNGs under ``out_dir``."""
    samples = []
    for i, (name, clean) in enumerate(sample_images().items()):
        clean_path = out_dir / "clean" / f"{name}.png"
        noisy_path = out_dir / "noisy" / f"{name}.png"
        clean_path.parent.mkdir(parents=True, exist_ok=True)
        noisy_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(clean).save(clean_path)
        Image.fromarray(add_noise(clean, sigma, seed + i)).save(noisy_path)
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
        scores.append({"image": s.name, "psnr_noisy": round(psnr_noisy, 2), "psnr_restored": round(psnr_restored, 2)})
        rows.append(labelled_row([(f"noisy {psnr_noisy:.2f} dB", noisy), (f"invrep {psnr_restored:.2f} dB", restored),
                                  ("clean", clean)], height))
    sheet = Image.new("RGB", (max(r.width for r in rows), height * len(rows)))
    for i, r in enumerate(rows):
        sheet.paste(r, (0, i * height))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path)
    return scores
