"""Tune OpenCV NLM's filter strength h per sigma for the bench's baseline (invrep_cli/baselines.py).

Sweeps h/sigma by PSNR on two scikit-image photos that are NOT bench images (rocket,
motorcycle_left; gray = their luma) and prints the tables to paste into NLM_H_COLOR / NLM_H_GRAY.
About 207 s on 2 cores:

    python benchmarks/tune_nlm.py
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from invrep_cli.baselines import nlm_denoise
from invrep_cli.synthetic import add_noise, image_metrics, noise_seed


def tune_nlm_h(
    sigmas: Sequence[float] = (5, 10, 15, 25, 35, 50, 75), seed: int = 1234
) -> dict[str, dict[float, float]]:
    """Pick NLM's h per sigma by PSNR on two scikit-image photos that are not bench images.

    Ratios h/sigma on a 0.1 grid, then refined by 0.025 around the best; returns
    ``{"color": {sigma: h}, "gray": {sigma: h}}`` (h rounded to 0.1).
    """
    import skimage.data
    from PIL import Image

    photos = [skimage.data.rocket(), skimage.data.stereo_motorcycle()[0]]
    sets = {
        "color": photos,
        "gray": [np.asarray(Image.fromarray(p).convert("L")) for p in photos],
    }
    out: dict[str, dict[float, float]] = {}
    for kind, cleans in sets.items():
        out[kind] = {}
        for sigma in sigmas:
            noisies = [add_noise(c, sigma, noise_seed(seed, i, sigma)) for i, c in enumerate(cleans)]

            def score(h: float, cleans: list[np.ndarray] = cleans, noisies: list[np.ndarray] = noisies) -> float:
                pairs = zip(cleans, noisies, strict=True)
                return float(np.mean([image_metrics(c, nlm_denoise(n, h))[0] for c, n in pairs]))

            scores = {r: score(sigma * r) for r in np.round(np.arange(0.3, 1.51, 0.1), 3)}
            best = max(scores, key=scores.__getitem__)
            for r in (best - 0.05, best - 0.025, best + 0.025, best + 0.05):
                if r > 0 and r not in scores:
                    scores[round(float(r), 3)] = score(sigma * r)
            best = max(scores, key=scores.__getitem__)
            out[kind][float(sigma)] = round(float(sigma * best), 1)
    return out


if __name__ == "__main__":
    print(json.dumps(tune_nlm_h(), indent=1))
