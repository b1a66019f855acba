"""How far a noise-level estimate could serve as a noise-level input (issue 17, item 2): the level
it reads (0-255) on clean photos and on camera-noisy photos of the run's own folders. A conditioned
restorer needs the two apart. Two estimators: ``fit`` (noise.py's ``estimate_sigma``: the per-image
fit's std at the image's mean intensity) and ``haar`` (level.py's ``image_level``, what
``--level-input`` models are told).

  python benchmarks/level_spread.py runs/data/CBSD432-held runs/data/PolyU100-real [--images 16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from invrep_cli.data import list_images, read_image
from invrep_cli.level import image_level
from invrep_cli.noise import estimate_sigma


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--images", type=int, default=16, help="the first N images of each folder, by name")
    args = parser.parse_args()
    for folder in args.folders:
        images = [read_image(p) for p in list_images(folder)[: args.images]]
        for name, estimator in (("fit", estimate_sigma), ("haar", image_level)):
            levels = np.array([estimator(img) * 255 for img in images])
            print(f"{folder} [{name}]: {len(levels)} images, level {levels.min():.2f}-{levels.max():.2f} "
                  f"(median {np.median(levels):.2f}; over 4: {(levels > 4).sum()}): {np.round(levels, 2).tolist()}")


if __name__ == "__main__":
    main()
