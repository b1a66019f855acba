"""Rank restorers on a noisy folder with no reference: train's no-reference score (SURE under each
photo's fitted noise, ``invrep_cli/training/criterion.py``) on evenly spaced photos, 256-px centre
crops. It reads the noisy folder alone, so it can choose among a run's checkpoints from the run's own
data (the training folder of PolyU *_real files holds no *_mean file).

  python benchmarks/noref_choice.py runs/data/PolyU100-real MODELS... [--images 12] [--strength 1,1.3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from held_out import Blended, strengths  # benchmarks/ is on the path when a script here runs

from invrep_cli.checkpoint import load_restorer
from invrep_cli.data import list_images, read_image
from invrep_cli.training.criterion import NoisyImage, estimated_psnr, prepare
from invrep_cli.training.noise_setup import evenly_spaced
from invrep_cli.training.report import SCORE_CROP, centre_crop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("noisy_dir", type=Path)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--strength", type=strengths, default=[1.0],
                        help="comma list of restore --strength values to score each model at")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    picks = evenly_spaced(list_images(args.noisy_dir), args.images)
    # fitted together, as train's report fits them: small images (under the fit's pooling size) are
    # pooled, large photos are each fitted on the whole photo
    fitted = prepare([read_image(path) for path in picks])
    if not fitted:
        raise SystemExit(f"{args.noisy_dir}: no noise could be fitted on the {len(picks)} images picked")
    images = [NoisyImage(centre_crop(image.pixels, SCORE_CROP), image.noise) for image in fitted]
    for spec in args.models:
        loaded = load_restorer(spec)[0].eval()
        for strength in args.strength:
            with torch.no_grad():
                score = estimated_psnr(Blended(loaded, strength), images)
            row = {"model": spec, "images": len(images), "no_reference_db": round(float(score), 3)}
            if args.strength != [1.0]:
                row["strength"] = strength
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
