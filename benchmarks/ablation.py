"""Small controlled training comparisons behind two design decisions (CPU-sized, same seed and data):

  --study norm   decoder normalisation: channel (invrep's, local) vs layer (the authors' whole-map
                 LayerNorm, non-local) vs batch
  --study sigma  default model: fixed sigma 25 (the paper) vs blind sigma 5-50

Each variant trains a reduced LIR (``--width``, ``--res-blocks``) for ``--steps`` on CBSD432 (clean
half / synthetic-noisy half) without the semantic term, then restores the first ``--eval-images``
CBSD68 images with seeded 8-bit Gaussian noise at each evaluation sigma (whole image, torch, fp32)
and reports PSNR/SSIM (scikit-image). Prints one JSON object.

  python benchmarks/ablation.py --study norm --steps 300
  python benchmarks/ablation.py --study sigma --steps 300
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from invrep_cli.checkpoint import load_restorer
from invrep_cli.config import LossWeights, ModelConfig, TrainConfig
from invrep_cli.demo import add_noise
from invrep_cli.train import train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def evaluate(weights: Path, images: list[np.ndarray], sigmas: list[float]) -> dict[str, dict[str, float]]:
    restorer, _ = load_restorer(weights)
    out: dict[str, dict[str, float]] = {}
    for sigma in sigmas:
        psnrs, ssims = [], []
        for i, clean in enumerate(images):
            noisy = add_noise(clean, sigma, seed=1000 + i)
            x = torch.from_numpy(noisy).permute(2, 0, 1)[None].float() / 255.0
            with torch.inference_mode():
                y = restorer(x)[0].permute(1, 2, 0).numpy()
            restored = np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)
            psnrs.append(peak_signal_noise_ratio(clean, restored, data_range=255))
            ssims.append(structural_similarity(clean, restored, data_range=255, channel_axis=-1))
        out[f"sigma{sigma:g}"] = {"psnr": round(float(np.mean(psnrs)), 3), "ssim": round(float(np.mean(ssims)), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=["norm", "sigma"], required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--res-blocks", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop-size", type=int, default=64)
    parser.add_argument("--eval-images", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    base_model = ModelConfig(name="ablation", width=args.width, n_res_blocks=args.res_blocks, disc_width=args.width)
    if args.study == "norm":
        variants = {
            n: (dataclasses.replace(base_model, decoder_norm=n), "gaussian:25") for n in ("channel", "layer", "batch")
        }
        sigmas = [25.0]
    else:
        variants = {s: (base_model, f"gaussian:{s}") for s in ("25", "5-50")}
        sigmas = [15.0, 25.0, 50.0]
    test_files = sorted((SHARED / "CBSD68").glob("*.png"))[: args.eval_images]
    images = [np.asarray(Image.open(f).convert("RGB")) for f in test_files]

    report: dict[str, object] = {
        "study": args.study, "args": {k: str(v) for k, v in vars(args).items()}, "variants": {}
    }
    for name, (model, synthetic) in variants.items():
        out_dir = args.out / f"{args.study}-{name}"
        cfg = TrainConfig(
            out_dir=str(out_dir), clean_dir=str(SHARED / "CBSD432"), synthetic=synthetic, model=model,
            losses=LossWeights(semantic=0.0), steps=args.steps, batch_size=args.batch_size, crop_size=args.crop_size,
            seed=args.seed, device="cpu", workers=1, checkpoint_every=args.steps, keep_checkpoints=1,
            sample_every=10**9, val_every=10**9, log_every=10,
        )
        start = time.perf_counter()
        result = train(cfg)
        seconds = time.perf_counter() - start
        rows = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
        steps = [r for r in rows if r.get("event") == "step"]
        last = steps[-5:]
        keys = ("rec_noisy", "rec_clean", "cycle_noisy", "cycle_clean", "background")
        final = {k: round(float(np.mean([r[k] for r in last])), 4) for k in keys}
        report["variants"][name] = {  # type: ignore[index]
            "synthetic": synthetic,
            "decoder_norm": model.decoder_norm,
            "train_seconds": round(seconds, 1),
            "final_losses_mean_last_5_logs": final,
            "eval": evaluate(Path(result.restorer), images, sigmas),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
