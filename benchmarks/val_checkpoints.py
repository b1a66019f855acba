"""Score training checkpoints (or restorer files) on held-out *training-set* images, never a test set.

Model selection must not look at CBSD68/Set12, so this scores the restorer G_Y(E_X(x)) of each
checkpoint on images from the *noisy half* of the `--synthetic` split: the run only ever saw noisy
versions of them (fresh noise each step), never their clean pixels. It is a progress signal for
choosing a checkpoint, not a quality claim; the numbers users see come from `invrep bench` on test sets.

  python benchmarks/val_checkpoints.py ../shared/data/CBSD432 runs/default/checkpoints/*.pt \
      weights/lir-lite-gauss.safetensors --images 8 --crop 256 --sigma 15,25,50 --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from invrep_cli.checkpoint import load_restorer
from invrep_cli.data import centre_crop, list_images, read_image, split_halves
from invrep_cli.synthetic import add_noise, image_metrics, noise_seed, to_uint8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clean_dir", type=Path, help="the --clean folder of the run (split with --seed)")
    parser.add_argument("models", type=Path, nargs="+", help="train checkpoints (.pt) or restorer files")
    parser.add_argument("--seed", type=int, default=0, help="the run's --seed (decides the split)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--sigma", default="15,25,50")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--gray", action="store_true", help="score gray versions (as bench --gray makes them)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    _, noisy_half = split_halves(list_images(args.clean_dir), args.seed)
    picks = [noisy_half[i] for i in np.linspace(0, len(noisy_half) - 1, args.images).round().astype(int)]
    sigmas = [float(s) for s in args.sigma.split(",")]
    cases = []  # (sigma, clean, noisy) as uint8, made once (noise as `invrep bench` makes it), shared by every model
    for sigma in sigmas:
        for index, path in enumerate(picks):
            clean = to_uint8(centre_crop(read_image(path), args.crop))
            if args.gray:  # ITU-R 601 luma, as Pillow's convert("L") that bench --gray uses
                clean = np.asarray(Image.fromarray(clean).convert("L"))
            cases.append((sigma, clean, add_noise(clean, sigma, noise_seed(args.seed, index, sigma))))

    rows = []
    for model in args.models:
        restorer, meta = load_restorer(model)
        scores: dict[float, list[float]] = {s: [] for s in sigmas}
        for sigma, clean, noisy in cases:
            chw = noisy[None] if noisy.ndim == 2 else noisy.transpose(2, 0, 1)
            inp = torch.from_numpy(chw[None] / np.float32(255.0))
            with torch.inference_mode():
                out = restorer(inp)[0].numpy().transpose(1, 2, 0)
            out = out[..., 0] if noisy.ndim == 2 else out
            scores[sigma].append(image_metrics(clean, to_uint8(out))[0])
        row = {"model": str(model), "step": meta.get("step") or meta.get("trained_steps")}
        row.update({f"psnr_{s:g}": round(float(np.mean(v)), 3) for s, v in scores.items()})
        rows.append(row)
        if not args.json:
            print(row["model"], row["step"], *[row[f"psnr_{s:g}"] for s in sigmas], flush=True)
    noisy_rows = {
        f"psnr_{s:g}": round(float(np.mean([image_metrics(c, n)[0] for t, c, n in cases if t == s])), 3) for s in sigmas
    }
    if args.json:
        print(json.dumps({"images": [p.name for p in picks], "crop": args.crop, "noisy": noisy_rows, "models": rows}))
    else:
        print("noisy input", *noisy_rows.values())


if __name__ == "__main__":
    main()
