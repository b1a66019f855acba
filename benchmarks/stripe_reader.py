"""How much of known column stripes gx_probe's banding reader sees under a run's fitted noise:
stripes of each std (0-255, one offset per column) drawn alone and added to y + n_fit on the same
crops gx_probe cuts. Tells whether a weak x_ba reading means weak stripes or stripes the reader
cannot tell from the white noise (it takes the white noise's share out).

  python benchmarks/stripe_reader.py runs/band/ncgf/checkpoints/step_00001700.pt runs/band/clean
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch
from gx_probe import banding, random_crops, read_folder  # benchmarks/ is on the path when a script here runs

from invrep_cli.noise import NoiseModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a training checkpoint (its fitted noise model)")
    parser.add_argument("clean", type=Path)
    parser.add_argument("--stds", default="0,2,3,3.5,5,6", help="stripe stds to try, 0-255")
    parser.add_argument("--crops", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    noise = NoiseModel.from_dict(ckpt["noise_model"])
    y = random_crops(read_folder(args.clean), args.crops, args.size, random.Random(0))
    torch.manual_seed(0)
    fitted = noise.sample((y + 1) / 2) * 2 - 1
    for std in (float(s) for s in args.stds.split(",")):
        stripes = (torch.randn(args.crops, 1, 1, args.size) * (std / 127.5)).expand_as(y)
        alone, under = banding(stripes), banding(fitted + stripes)
        print(f"stripes of std {std:g}: read alone {alone:.2f}, under the fitted noise {under:.2f}")


if __name__ == "__main__":
    main()
