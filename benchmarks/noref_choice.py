"""Rank restorers on a noisy folder with no reference: train's no-reference score (SURE under each
photo's fitted noise, ``invrep_cli/training/criterion.py``) on evenly spaced photos, 256-px centre
crops. It reads the noisy folder alone, so it can choose among a run's checkpoints from the run's own
data (the training folder of PolyU *_real files holds no *_mean file). With --folder-fit, photos
whose own noise cannot be measured are scored under the fit of the whole folder as train makes it, as
the report does (off by default, so earlier readings stay as they were: they left such photos out).

  python benchmarks/noref_choice.py runs/data/PolyU100-real MODELS... [--images 12] [--strength 1,1.3]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from held_out import Blended, strengths  # benchmarks/ is on the path when a script here runs

from invrep_cli.checkpoint import load_restorer
from invrep_cli.config import TrainConfig
from invrep_cli.data import list_images, read_image
from invrep_cli.training.criterion import NoisyImage, estimated_psnr, prepare
from invrep_cli.training.noise_setup import evenly_spaced, fit_folder
from invrep_cli.training.report import SCORE_CROP, centre_crop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("noisy_dir", type=Path)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--folder-fit", action="store_true",
                        help="score photos whose own noise cannot be measured under the folder's fit")
    parser.add_argument("--strength", type=strengths, default=[1.0],
                        help="comma list of restore --strength values to score each model at")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    entries = list_images(args.noisy_dir)
    picks = evenly_spaced(entries, args.images)
    # fitted together, as train's report fits them: small images (under the fit's pooling size) are
    # pooled, large photos are each fitted on the whole photo
    pixels = [read_image(path) for path in picks]
    fitted = prepare(pixels)
    if args.folder_fit and len(fitted) < len(picks):  # the folder's fit, as train makes it, for the rest
        try:
            typical = fit_folder(
                entries, TrainConfig.noise_fit_images, TrainConfig.match_levels, str(args.noisy_dir),
                lambda message: print(message, file=sys.stderr),
            ).typical_fit()
        except ValueError:
            typical = None
        fitted = prepare(pixels, fallback=typical)
    if not fitted:
        raise SystemExit(f"{args.noisy_dir}: no noise could be fitted on the {len(picks)} images picked")
    images = [NoisyImage(centre_crop(image.pixels, SCORE_CROP), image.noise, image.folder_fit) for image in fitted]
    for spec in args.models:
        loaded = load_restorer(spec)[0].eval()
        for strength in args.strength:
            with torch.no_grad():
                score = estimated_psnr(Blended(loaded, strength), images)
            row = {"model": spec, "images": len(images), "no_reference_db": round(float(score), 3),
                   "folder_fit_images": sum(image.folder_fit for image in images)}
            if args.strength != [1.0]:
                row["strength"] = strength
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
