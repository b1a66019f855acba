"""Average restorer weights (a "model soup", Wortsman et al. 2022) into one restorer file.

Runs fine-tuned from one start stay in one basin of the loss, and the mean of their weights is
often a better restorer than any one of them, at no training and no restore cost. Every input must
have the same network shape. The output carries the inputs' sha256 and the training provenance they
share; feed it to ``package_weights.py`` like any run's restorer file. ``--weights`` blends
unevenly (a point on the line between two models, for instance); they must sum to 1.

  python benchmarks/average_weights.py runs/soup/g1g2.safetensors \
      runs/mix-g1/restorer-stage1.safetensors runs/mix-g2/restorer-stage1.safetensors
  python benchmarks/average_weights.py runs/soup/J15.safetensors A.safetensors B.safetensors --weights 0.85,0.15
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from invrep_cli.checkpoint import load_restorer, save_restorer

#: provenance kept when every input says the same (package_weights.py copies these on)
SHARED_KEYS = ("stage", "noise_model", "semantic_enabled")


def average(paths: list[Path], weights: list[float] | None = None) -> tuple[torch.nn.Module, dict]:
    """The restorer whose every tensor is the (weighted) mean of the inputs' (moving-average weights
    for a training checkpoint), and the metadata that says what went into it."""
    weights = weights or [1 / len(paths)] * len(paths)
    if len(weights) != len(paths) or abs(sum(weights) - 1) > 1e-6:
        raise SystemExit(f"--weights needs one weight per input, summing to 1 (got {weights})")
    loaded = [load_restorer(p) for p in paths]
    restorers = [r for r, _ in loaded]
    metas = [m for _, m in loaded]
    # compare the restorer's tensors, not the whole config: a config also names G_X's shape, which a
    # restorer file does not hold (lir-lite-unet's G_X was slimmed after lir-unet-real was trained)
    states = [r.state_dict() for r in restorers]
    shapes = {tuple((k, tuple(v.shape)) for k, v in s.items()) for s in states}
    if len(shapes) != 1:
        raise SystemExit("the inputs have different network shapes; only one shape can be averaged")
    mean = {
        k: (
            sum(w * s[k] for w, s in zip(weights, states, strict=True))
            if states[0][k].is_floating_point()
            else states[0][k]
        )
        for k in states[0]
    }
    soup = restorers[0]
    soup.load_state_dict(mean)
    meta = {
        "averaged_from": [
            {"path": str(p), "sha256": m["sha256"], "step": m.get("step"), "weight": w}
            for p, m, w in zip(paths, metas, weights, strict=True)
        ],
        "ema_decay": metas[0].get("ema_decay", 0.0),
    }
    for key in SHARED_KEYS:
        values = {json.dumps(m.get(key)) for m in metas}
        if len(values) == 1 and key in metas[0]:
            meta[key] = metas[0][key]
    return soup, meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("inputs", type=Path, nargs="+")
    parser.add_argument(
        "--weights",
        type=lambda t: [float(x) for x in t.split(",")],
        default=None,
        help="comma list, one per input, summing to 1 (default: equal)",
    )
    args = parser.parse_args()
    if len(args.inputs) < 2:
        raise SystemExit("give at least two restorer files to average")
    soup, meta = average(args.inputs, args.weights)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_restorer(soup, args.out, meta)
    print(json.dumps({"out": str(args.out), "inputs": [str(p) for p in args.inputs]}))


if __name__ == "__main__":
    main()
