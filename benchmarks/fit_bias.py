"""How strong the noise a run's fit draws is against the real noise of a synthetic folder's held
pairs (Round BIAS): each run's logged fits drawn onto the first 16 held ``*_mean`` images, against
those images' ``*_real`` noise, std over std per intensity bin (0-255) and overall. Above 1: the fit
draws too strong a noise.

    python benchmarks/fit_bias.py RUN/log.jsonl HELD [RUN/log.jsonl HELD ...]
    python benchmarks/fit_bias.py runs/white/wg/log.jsonl runs/white/held

The draws are clipped and, for 8-bit folders, quantised as the held files are (16-bit ones are
not: their quantum is far below the noise).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from invrep_cli.data import read_image
from invrep_cli.noise import ImageNoise, sample_fitted

BINS = (0, 10, 20, 40, 80, 128, 180, 230, 256)


def logged_fits(log: str) -> list[ImageNoise]:
    for line in Path(log).read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "noise_model":
            return [ImageNoise.from_dict(d) for d in event["model"]["fitted"]]
    sys.exit(f"{log}: no noise_model event")


def main() -> None:
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit(__doc__)
    for log, held in zip(args[::2], args[1::2], strict=True):
        fits = logged_fits(log)
        means = sorted(Path(held).glob("*_mean.png"))[:16]
        clean = [read_image(p)[:, :, 0] for p in means]
        real = [read_image(str(p).replace("_mean", "_real"))[:, :, 0] for p in means]
        eight_bit = all(np.allclose(c * 255, np.round(c * 255), atol=1e-3) for c in clean)
        gen = torch.Generator().manual_seed(1)
        drawn = []
        for c in clean:
            d = sample_fitted(torch.from_numpy(c)[None, None], fits, gen).clamp(0.0, 1.0)
            drawn.append((torch.round(d * 255) / 255 if eight_bit else d)[0, 0].numpy())
        level = np.concatenate([c.ravel() for c in clean]) * 255
        real_noise = np.concatenate([(r - c).ravel() for r, c in zip(real, clean, strict=True)]) * 255
        drawn_noise = np.concatenate([(d - c).ravel() for d, c in zip(drawn, clean, strict=True)]) * 255
        cells = []
        for lo, hi in zip(BINS[:-1], BINS[1:], strict=True):
            m = (level >= lo) & (level < hi)
            if m.sum() > 500:
                cells.append(f"{lo}-{hi}: {drawn_noise[m].std() / real_noise[m].std():.3f}")
        print(f"{log}: overall {drawn_noise.std() / real_noise.std():.3f} | " + ", ".join(cells))


if __name__ == "__main__":
    main()
