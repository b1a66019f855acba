"""Average restorer weights (a uniform "model soup", Wortsman et al. 2022) into one restorer file.

Runs fine-tuned from one start stay in one basin of the loss, and the mean of their weights is
often a better restorer than any one of them, at no training and no restore cost. Every input must
have the same network shape. The output carries the inputs' sha256 and the training provenance they
share; feed it to ``package_weights.py`` like any run's restorer file.

  python benchmarks/average_weights.py runs/soup/g1g2.safetensors \
      runs/mix-g1/restorer-stage1.safetensors runs/mix-g2/restorer-stage1.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from invrep_cli.checkpoint import load_restorer, save_restorer

#: provenance kept when every input says the same (package_weights.py copies these on)
SHARED_KEYS = ("stage", "noise_model", "semantic_enabled")


def average(paths: list[Path]) -> tuple[torch.nn.Module, dict]:
    """The restorer whose every tensor is the mean of the inputs' (moving-average weights for a
    training checkpoint), and the metadata that says what went into it."""
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
        k: (sum(s[k] for s in states) / len(states) if states[0][k].is_floating_point() else states[0][k])
        for k in states[0]
    }
    soup = restorers[0]
    soup.load_state_dict(mean)
    meta = {
        "averaged_from": [
            {"path": str(p), "sha256": m["sha256"], "step": m.get("step")} for p, m in zip(paths, metas, strict=True)
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
    args = parser.parse_args()
    if len(args.inputs) < 2:
        raise SystemExit("give at least two restorer files to average")
    soup, meta = average(args.inputs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_restorer(soup, args.out, meta)
    print(json.dumps({"out": str(args.out), "inputs": [str(p) for p in args.inputs]}))


if __name__ == "__main__":
    main()
