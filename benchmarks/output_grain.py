"""How much fine grain restorers leave or add on a noisy folder: the mean |image - its 3x3 mean|
(255 scale; the input of ``train --disc-high-pass``'s discriminators, without the gain) of each
restorer's output on 256-px centre crops of evenly spaced photos, beside the noisy input's. A
restorer that removes noise lowers it; one that puts texture or grain back raises it toward the
input's. No reference is read.

  python benchmarks/output_grain.py runs/data/PolyU100-real MODELS... [--images 5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from invrep_cli.checkpoint import load_restorer
from invrep_cli.data import list_images, read_image
from invrep_cli.models.discriminators import high_pass
from invrep_cli.training.noise_setup import evenly_spaced
from invrep_cli.training.report import SCORE_CROP, centre_crop


def grain(image: torch.Tensor) -> float:
    return float(high_pass(image, 255.0).abs().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("noisy_dir", type=Path)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    picks = evenly_spaced(list_images(args.noisy_dir), args.images)
    crops = [torch.from_numpy(centre_crop(read_image(p), SCORE_CROP).transpose(2, 0, 1).copy())[None] for p in picks]
    print(json.dumps({"model": "noisy input", "grain": [round(grain(c), 3) for c in crops]}), flush=True)
    for spec in args.models:
        restorer = load_restorer(spec)[0].eval()
        with torch.no_grad():
            values = [grain(restorer(c).clamp(0, 1)) for c in crops]
        print(json.dumps({"model": spec, "grain": [round(v, 3) for v in values]}), flush=True)


if __name__ == "__main__":
    main()
