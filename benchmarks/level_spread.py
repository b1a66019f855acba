"""How far the per-image noise fit could serve as a noise-level input (issue 17, item 2): the level
it reads (``estimate_sigma``: the fit's std at the image's mean intensity, 0-255) on clean photos
and on camera-noisy photos of the run's own folders. A conditioned restorer needs the two apart.

  python benchmarks/level_spread.py runs/data/CBSD432-held runs/data/PolyU100-real [--images 16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from invrep_cli.data import list_images, read_image
from invrep_cli.noise import estimate_sigma


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--images", type=int, default=16, help="the first N images of each folder, by name")
    args = parser.parse_args()
    for folder in args.folders:
        levels = np.array([estimate_sigma(read_image(p)) * 255 for p in list_images(folder)[: args.images]])
        print(f"{folder}: {len(levels)} images, level {levels.min():.2f}-{levels.max():.2f} "
              f"(median {np.median(levels):.2f}; over 4: {(levels > 4).sum()}): {np.round(levels, 2).tolist()}")


if __name__ == "__main__":
    main()
