"""What the noise fit reads on white signal-dependent noise from faint to heavy (Round HEAVY): gray
Train400 images 1-200 (60 evenly spaced) with the noise of ``new_domain.py --noise white --std S``
(75 % of the variance shot noise at mid-gray), fitted as train fits a folder. The truth is S at
mid-gray; "clipped share read" is the share of clipped samples a block could hold (CLIP_SHARES);
"banded" counts the fits that read column or row banding (the truth has none).

    python benchmarks/heavy_fit.py [S ...]        # default: 20 35 50 75 100
"""

from __future__ import annotations

import sys

import numpy as np
from new_domain import DATA, SHOT  # benchmarks/ is on the path when a script here runs

from invrep_cli.data import read_image
from invrep_cli.noise import fit_noise_model
from invrep_cli.training.noise_setup import evenly_spaced


def noisy_of(gray: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    gain, floor = SHOT * std**2 / 0.5, (1 - SHOT) * std**2
    noisy = gray + np.sqrt(gain * gray + floor) * rng.standard_normal(gray.shape).astype(np.float32)
    return np.repeat(np.round(np.clip(noisy, 0.0, 1.0) * 255) / 255, 3, axis=2).astype(np.float32)


def main() -> None:
    stds = [float(s) for s in sys.argv[1:]] or [20.0, 35.0, 50.0, 75.0, 100.0]
    files = sorted((DATA / "Train400").glob("*.png"))
    gray = [read_image(p)[:, :, :1] for p in evenly_spaced(files[:200], 60)]
    rng = np.random.default_rng(0)
    print("| std at mid-gray (truth) | clipped share read | fits | banded | fitted std at mid-gray (median) |")
    print("|---|---|---|---|---|")
    for std in stds:
        noisy = [noisy_of(g, std / 255, rng) for g in gray]
        try:
            model = fit_noise_model(noisy)
        except ValueError as exc:
            print(f"| {std:g} | | 0 | | {exc} |")
            continue
        level = 255 * float(np.median([np.mean(f.std_at(0.5)) for f in model.fitted]))
        banded = sum(bool(f.column_std or f.row_std) for f in model.fitted)
        print(f"| {std:g} | {model.clip_share:.0%} | {len(model.fitted)} | {banded} | {level:.1f} |")


if __name__ == "__main__":
    main()
