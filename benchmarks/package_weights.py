"""Turn an `invrep train` run into shippable restorer weights (E_X and G_Y only, safetensors).

Measures the context margin tiles need (``backends.measure_context_margin`` over several test
images; the largest, plus one size multiple of headroom, is stored as ``context_margin``), writes
the file with its provenance in the metadata, and prints sha256 and size for the registry.

  python benchmarks/package_weights.py runs/default/restorer-stage1.safetensors weights/lir-unet-gauss.safetensors \
      --note "lir-lite, CBSD432 split, gaussian:5-50, CPU"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from invrep_cli.backends import measure_context_margin, theoretical_margin
from invrep_cli.checkpoint import load_restorer, save_restorer
from invrep_cli.fsutil import sha256_file
from invrep_cli.models import receptive_field


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--note", default="")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--tol", type=float, default=0.5 / 255)
    parser.add_argument("--min-margin", type=int, default=0, help="store at least this context margin (px)")
    parser.add_argument("--raw", action="store_true", help="ship the raw weights, not the run's moving average")
    args = parser.parse_args()

    restorer, meta = load_restorer(args.checkpoint, ema=not args.raw)
    rf = receptive_field(restorer.config)
    full = theoretical_margin(rf, restorer.size_multiple)

    def run(batch):  # N x C x H x W float32 in [0, 1]
        with torch.inference_mode():
            return restorer(torch.from_numpy(batch)).numpy()

    margins = [
        measure_context_margin(run, restorer.size_multiple, tol=args.tol, max_margin=full, seed=s)
        for s in range(args.seeds)
    ]
    # the measurement depends on how much the model changes its (random) test images: a model that
    # changes them little measures a small margin that real photos may exceed, hence a floor
    margin = min(full, max(max(margins) + restorer.size_multiple, args.min_margin))
    extra = {
        "context_margin": margin,
        "context_margin_measured": margins,
        "receptive_field": rf,
        "trained_steps": meta.get("step"),
        "ema_decay": meta.get("ema_decay", 0.0),
        "source_checkpoint_sha256": meta["sha256"],
        "note": args.note,
    }
    # the training provenance a run's restorer file carries (stage, noise model, semantic term; for
    # a mean of several runs' weights, which files went into it)
    for key in ("stage", "warmup_steps", "noise_model", "semantic_enabled", "averaged_from"):
        if key in meta:
            extra[key] = meta[key]
    save_restorer(restorer, args.out, extra)
    report = {"path": str(args.out), "sha256": sha256_file(args.out), "size": args.out.stat().st_size, **extra}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
