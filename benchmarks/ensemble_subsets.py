"""Which orientations does a self-ensemble need? Restores each held-out case in all 8 flips and
quarter turns once, then scores the mean of every subset that contains the unturned pass (sizes 1,
2, 4, 8) from those outputs, so a cheaper ensemble can be chosen on the run's own held-out images.

  python benchmarks/ensemble_subsets.py runs/data/held8 weights/lir-unet-mix.safetensors \
      --noise-log runs/mix-e/log.jsonl --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from held_out import camera_model, make_cases  # benchmarks/ is on the path when a script here runs

from invrep_cli.checkpoint import load_restorer
from invrep_cli.data import list_images
from invrep_cli.ensemble import SYMMETRIES, _transform, _undo
from invrep_cli.synthetic import image_metrics, to_uint8

CASES = ("clean", "gaussian:15", "gaussian:25", "gaussian:50", "camera", "camera2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clean_dir", type=Path)
    parser.add_argument("model", type=Path)
    parser.add_argument("--noise-log", type=Path)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    restorer, _ = load_restorer(args.model)
    restorer.eval()
    cases = [c for c in make_cases(list_images(args.clean_dir), args.crop,
                                   camera_model(args.noise_log) if args.noise_log else None) if c[0] in CASES]
    # outputs[k][i]: case i restored in symmetry k and turned back (float, 0-1)
    outputs = []
    for turns, mirrored in SYMMETRIES:
        per_case = []
        for _, _, noisy in cases:
            batch = noisy.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
            with torch.inference_mode():
                out = restorer(torch.from_numpy(np.ascontiguousarray(_transform(batch, turns, mirrored)))).numpy()
            per_case.append(_undo(out, turns, mirrored)[0])
        outputs.append(per_case)
    names = list(dict.fromkeys(c for c, _, _ in cases))
    for size in (1, 2, 4, 8):
        for rest in itertools.combinations(range(1, 8), size - 1):
            subset = (0, *rest)
            scores: dict[str, list[float]] = {n: [] for n in names}
            for i, (case, clean, _) in enumerate(cases):
                mean = np.mean([outputs[k][i] for k in subset], axis=0)
                scores[case].append(image_metrics(clean, to_uint8(mean.transpose(1, 2, 0)))[0])
            row = {"size": size, "subset": [SYMMETRIES[k] for k in subset]}
            row.update({n: round(float(np.mean(v)), 3) for n, v in scores.items()})
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
