"""Does train's no-reference criterion rank restorers as PSNR does, on real camera noise?

Scores restorers on PolyU100 *_real photos (evenly spaced picks, 256-px centre crops) twice: PSNR
against the *_mean references (used for scoring only) and the no-reference SURE estimate under each
image's fitted noise (``invrep_cli/training/criterion.py``), which is what ``invrep train``'s report
shows. Usage: python benchmarks/criterion_vs_psnr.py [--images 6] [WEIGHTS ...]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from invrep_cli.checkpoint import load_restorer
from invrep_cli.data import read_image
from invrep_cli.training.criterion import NoisyImage, estimated_psnr, prepare
from invrep_cli.training.noise_setup import evenly_spaced
from invrep_cli.training.report import SCORE_CROP, centre_crop

POLYU = Path(__file__).resolve().parents[2] / "shared" / "data" / "PolyU100"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="*", default=["weights/lir-unet-real.safetensors",
                                                       "weights/lir-unet-gauss.safetensors"])  # fmt: skip
    parser.add_argument("--images", type=int, default=6, help="PolyU100 *_real photos, evenly spaced")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted(POLYU.glob("*_real.JPG"))
    picks = evenly_spaced(files, args.images)
    pairs = []
    for path in picks:
        noisy = read_image(path)
        fitted = prepare([noisy])  # the noise fitted on the whole photo, as the report does
        if fitted:
            ref = read_image(path.with_name(path.name.replace("_real", "_mean")))
            pairs.append((NoisyImage(centre_crop(noisy, SCORE_CROP), fitted[0].noise), centre_crop(ref, SCORE_CROP)))
    print(f"{len(pairs)} of {len(picks)} PolyU100 photos with a fitted noise model")
    for spec in args.weights:
        model = load_restorer(spec)[0].eval()

        def run(x: torch.Tensor, model: torch.nn.Module = model) -> torch.Tensor:
            return model(x).float()

        with torch.no_grad():
            outputs = [run(torch.from_numpy(a.pixels.transpose(2, 0, 1))[None])[0].numpy() for a, _ in pairs]
        mse = np.mean([((out.transpose(1, 2, 0) - b) ** 2).mean() for out, (_, b) in zip(outputs, pairs, strict=True)])
        score = estimated_psnr(run, [a for a, _ in pairs])
        print(f"{spec}: PSNR vs *_mean {10 * math.log10(1 / mse):.2f} dB, no-reference {score:.2f} dB")


if __name__ == "__main__":
    main()
