"""Write a training checkpoint's *raw* E_X and G_Y (not its moving average) as a restorer file, to
score the two against each other with `invrep bench` (a `.pt` given to `--weights` runs the average).

  python benchmarks/raw_restorer.py runs/a/last.pt runs/a/raw.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

from invrep_cli.checkpoint import load_restorer, save_restorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    restorer, meta = load_restorer(args.checkpoint, ema=False)
    save_restorer(restorer, args.out, {"ema_decay": 0.0, "step": meta.get("step"), "source": str(args.checkpoint)})
    print(f"{args.out}: raw weights of {args.checkpoint} at step {meta.get('step')}")


if __name__ == "__main__":
    main()
