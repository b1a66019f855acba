"""Paired speed and difference of restore's CPU ``--precision auto`` against fp32, through restore's
own tiles on one noisy 8-bit photo (the case where auto picks bf16 on a CPU with bf16 instructions).

    .venv/bin/python benchmarks/auto_precision.py --image ../shared/data/CBSD68/0000.png --threads 2

The two paths run interleaved, one restore each per round after a warm-up, so other work on the
machine slows both alike; the speed-up is the median over rounds of fp32 seconds / auto seconds in
the same round. Also reported: the largest and mean difference of the 8-bit outputs. Quality on a
whole test set is ``invrep bench --precisions fp32,bf16``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
from PIL import Image

from invrep_cli.backends import make_backend
from invrep_cli.restore import choose_tile, restore_pixels
from invrep_cli.weights import resolve_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", required=True, help="a clean 8-bit photo; Gaussian noise is added")
    parser.add_argument("--weights", default=None, help="weights spec (default: the bundled model)")
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    clean = np.asarray(Image.open(args.image).convert("RGB"))
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, args.sigma, clean.shape), 0, 255).round().astype(np.uint8)
    weights = resolve_weights(args.weights)
    paths = {
        "fp32": make_backend(weights, "torch", "cpu", "fp32", threads=args.threads),
        "auto": make_backend(weights, "torch", "cpu", "auto", threads=args.threads),
    }
    for backend in paths.values():
        backend.select_bit_depth(8)
    tile = choose_tile(paths["fp32"]).tile
    outputs: dict[str, np.ndarray] = {}
    for name, backend in paths.items():  # warm-up: oneDNN primitive creation
        outputs[name] = restore_pixels(noisy, backend, tile, 16, out_dtype=np.uint8)
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, backend in paths.items():
            start = time.perf_counter()
            restore_pixels(noisy, backend, tile, 16, out_dtype=np.uint8)
            seconds[name].append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(seconds["fp32"], seconds["auto"], strict=True)]
    megapixels = noisy.shape[0] * noisy.shape[1] / 1e6
    diff = np.abs(outputs["fp32"].astype(np.int16) - outputs["auto"].astype(np.int16))
    print(json.dumps({
        "image": args.image, "size": list(noisy.shape), "tile": tile, "threads": args.threads,
        "auto_precision": paths["auto"].precision_policy, "load_average": os.getloadavg(),
        "mp_per_s": {name: megapixels / statistics.median(s) for name, s in seconds.items()},
        "paired_speedup": statistics.median(ratios), "ratios": [round(r, 3) for r in ratios],
        "max_abs_diff_8bit": int(diff.max()), "mean_abs_diff_8bit": float(diff.mean()),
    }))


if __name__ == "__main__":
    main()
