"""Column banding a restorer leaves: the noise fit's own reader (``noise._column_offsets``) on
restored - reference of each pair of a scoring folder, averaged (0-255), beside the noisy input's.
Whether a stage 2 that taught G_X the stripes also taught the restorer to remove them: PSNR alone
does not say which part of the noise a gain came from.

  python benchmarks/banding_left.py runs/band/held WEIGHTS... [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from invrep_cli.checkpoint import load_restorer
from invrep_cli.data import read_image
from invrep_cli.noise import _column_offsets
from invrep_cli.pairs import match_pairs


def banding(error: np.ndarray) -> float:
    """Column banding (0-255) of an H x W x C difference image."""
    return float(_column_offsets(error + 0.5)[1] * 255)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", type=Path, help="folder of *_real / *_mean pairs (bench --pairs' patterns)")
    parser.add_argument("weights", type=Path, nargs="+", help="restorer files or training checkpoints (EMA)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = [(read_image(f.noisy), read_image(f.reference)) for f in match_pairs(args.pairs)]
    noisy = np.mean([banding(x - y) for x, y in pairs])
    print(f"{len(pairs)} pairs; banding of noisy - reference {noisy:.2f}")
    for path in args.weights:
        restorer, _ = load_restorer(path)
        left = []
        for x, y in pairs:
            with torch.no_grad():
                out = restorer(torch.from_numpy(x).permute(2, 0, 1)[None].float())
            left.append(banding(out[0].permute(1, 2, 0).numpy().clip(0, 1) - y))
        print(f"{path}: banding of restored - reference {np.mean(left):.2f} (PSNR: invrep bench --pairs)")


if __name__ == "__main__":
    main()
