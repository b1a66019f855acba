"""Would a per-image `--strength auto` work? Under each image's fitted noise, SURE of the blend
input + S x (f(input) - input) is quadratic in S (criterion.py's estimate with the blend put in):
  SURE(S) = S^2 A - tr + 2 ((1 - S) B + S D),  A = ||f(y) - y||^2, B = ||b||^2, D = b . (f(y + e b) - f(y)) / e
so the best S for one image is (B - D) / A. This prints that S per image: on held-out clean photos
(noise-free; the right answer is small, anything above 1 sharpens grain that is not noise), on the
held-out camera-noise case, and on the noisy folder (whole-photo fits, 256-px centre crops, as
noref_choice.py scores them). Small held-out crops are fitted pooled per case, as train does.

  python benchmarks/auto_strength.py weights/lir-unet-mix.safetensors runs/data/held8 runs/data/PolyU100-real \
      --noise-log runs/mix-d/log.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from held_out import camera_model, make_cases  # benchmarks/ is on the path when a script here runs

from invrep_cli.checkpoint import load_restorer
from invrep_cli.data import list_images, read_image
from invrep_cli.noise import sample_fitted
from invrep_cli.training.criterion import EPSILON, NoisyImage, prepare
from invrep_cli.training.noise_setup import evenly_spaced
from invrep_cli.training.report import SCORE_CROP, centre_crop


@torch.no_grad()
def best_strength(model: torch.nn.Module, image: NoisyImage) -> float:
    y = torch.from_numpy(image.pixels.transpose(2, 0, 1)).unsqueeze(0)
    b = sample_fitted(y, [image.noise], torch.Generator().manual_seed(0)) - y
    restored = model(y).float()
    divergence = (b * (model(y + EPSILON * b).float() - restored)).sum() / EPSILON
    return float(((b * b).sum() - divergence) / ((restored - y) ** 2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("held_out", type=Path, help="held-out clean images")
    parser.add_argument("noisy_dir", type=Path, help="the noisy training folder")
    parser.add_argument("--noise-log", type=Path, required=True, help="a run's log.jsonl (its fitted camera noise)")
    parser.add_argument("--images", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_restorer(args.model)[0].eval()
    rows: dict[str, list[float | None]] = {}
    cases = make_cases(list_images(args.held_out), 256, camera_model(args.noise_log))
    for name in ("clean", "camera"):
        crops = [np.repeat(n[..., None], 3, -1) if n.ndim == 2 else n for c, _, n in cases if c == name]
        rows[f"held-out {name}"] = [round(best_strength(model, f), 2)
                                    for f in prepare([c.astype(np.float32) / 255 for c in crops])]
    picks = evenly_spaced(list_images(args.noisy_dir), args.images)
    rows["noisy folder"] = []
    for path in picks:
        full = read_image(path)
        fitted = prepare([full])
        if fitted:
            crop = np.ascontiguousarray(centre_crop(full, SCORE_CROP), dtype=np.float32)
            rows["noisy folder"].append(round(best_strength(model, NoisyImage(crop, fitted[0].noise)), 2))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
