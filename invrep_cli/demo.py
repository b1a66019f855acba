"""`invrep demo`: noisy sample photos (shipped inside scikit-image, so it works offline), restored with
the bundled weights, and a side-by-side comparison image (noisy | restored | clean, with PSNR)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

#: scikit-image sample photos used by the demo (none of them is in any training or test set we use)
SAMPLES = ("astronaut", "coffee", "chelsea")


@dataclass
class DemoSample:
    name: str
    clean: Path
    noisy: Path


def sample_images(names: tuple[str, ...] = SAMPLES) -> dict[str, np.ndarray]:
    """uint8 RGB sample photos from skimage.data (bundled with the package, no download)."""
    from skimage import data

    out = {}
    for name in names:
        img = getattr(data, name)()
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        out[name] = np.ascontiguousarray(img[..., :3])
    return out


def add_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Gaussian noise on the 0-255 scale, rounded and clipped to 8 bit like a saved file."""
    rng = np.random.default_rng(seed)
    noisy = clean.astype(np.float64) + rng.normal(0.0, sigma, clean.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


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


def comparison_image(samples: list[DemoSample], restored_dir: Path, out_path: Path, height: int = 256) -> list[dict]:
    """Rows of noisy | restored | clean, each labelled with its PSNR against clean; returns the PSNRs."""
    from skimage.metrics import peak_signal_noise_ratio

    rows, scores = [], []
    for s in samples:
        clean = np.asarray(Image.open(s.clean).convert("RGB"))
        noisy = np.asarray(Image.open(s.noisy).convert("RGB"))
        restored = np.asarray(Image.open(restored_dir / s.noisy.name).convert("RGB"))
        psnr_noisy = peak_signal_noise_ratio(clean, noisy, data_range=255)
        psnr_restored = peak_signal_noise_ratio(clean, restored, data_range=255)
        scores.append({"image": s.name, "psnr_noisy": round(psnr_noisy, 2), "psnr_restored": round(psnr_restored, 2)})
        panels = []
        for label, arr in (
            (f"noisy {psnr_noisy:.2f} dB", noisy),
            (f"invrep {psnr_restored:.2f} dB", restored),
            ("clean", clean),
        ):
            pil = Image.fromarray(arr)
            pil = pil.resize((round(pil.width * height / pil.height), height), Image.Resampling.LANCZOS)
            ImageDraw.Draw(pil).text((6, 6), label, fill=(255, 255, 0))
            panels.append(pil)
        row = Image.new("RGB", (sum(p.width for p in panels), height))
        x = 0
        for p in panels:
            row.paste(p, (x, 0))
            x += p.width
        rows.append(row)
    sheet = Image.new("RGB", (max(r.width for r in rows), height * len(rows)))
    for i, r in enumerate(rows):
        sheet.paste(r, (0, i * height))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path)
    return scores
