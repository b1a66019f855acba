"""Small controlled training comparisons behind three design decisions (CPU-sized, same seed and data):

  --study norm   decoder normalisation: channel (invrep's, local) vs layer (the authors' whole-map
                 LayerNorm, non-local) vs batch
  --study sigma  default model: fixed sigma 25 (the paper) vs blind sigma 5-50
  --study restorer  the restorer's shape under stage 1 (the warm start, gaussian:5-50): lir-lite (the
                 authors' shape at half width) vs lir-lite-skip (one full-resolution skip, residual
                 output) vs lir-lite-unet (skips at full and half resolution, 3x3 upsampling convs),
                 at the same seed, steps and batches; scored on the run's own noisy half of CBSD432
                 (never a test set) with the multiply-adds per pixel and the CPU restore speed

Each variant trains a reduced LIR (``--width``, ``--res-blocks``) for ``--steps`` on CBSD432 (clean
half / synthetic-noisy half) without the semantic term, then restores the first ``--eval-images``
CBSD68 images with seeded 8-bit Gaussian noise at each evaluation sigma (whole image, torch, fp32)
and reports PSNR/SSIM (scikit-image). Prints one JSON object.

  python benchmarks/ablation.py --study norm --steps 300
  python benchmarks/ablation.py --study sigma --steps 300
  python benchmarks/ablation.py --study restorer --steps 300 --batch-size 16
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
from invrep_cli.training import train

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
    parser.add_argument("--study", choices=["norm", "sigma", "restorer"], required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--res-blocks", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop-size", type=int, default=64)
    parser.add_argument("--eval-images", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.study == "restorer":
        restorer_study(args)
        return
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


def restorer_study(args: argparse.Namespace) -> None:
    from invrep_cli.bench import restorer_macs_per_pixel
    from invrep_cli.config import MODEL_PRESETS
    from invrep_cli.data import list_images, read_image, split_halves
    from invrep_cli.models import build_restorer

    _, noisy_half = split_halves(list_images(SHARED / "CBSD432"), args.seed)
    picks = [noisy_half[i] for i in np.linspace(0, len(noisy_half) - 1, args.eval_images).round().astype(int)]
    cleans = [np.round(read_image(p)[:256, :256] * 255).astype(np.uint8) for p in picks]
    report: dict[str, object] = {"study": "restorer", "args": {k: str(v) for k, v in vars(args).items()}}
    variants: dict[str, object] = {}
    for name in ("lir-lite", "lir-lite-skip", "lir-lite-unet"):
        model = MODEL_PRESETS[name]
        out_dir = args.out / f"restorer-{name}"
        cfg = TrainConfig(
            out_dir=str(out_dir), clean_dir=str(SHARED / "CBSD432"), synthetic="gaussian:5-50", model=model,
            losses=LossWeights(semantic=0.0), steps=args.steps, warmup_steps=args.steps, batch_size=args.batch_size,
            crop_size=args.crop_size, seed=args.seed, device="cpu", workers=1, checkpoint_every=args.steps,
            keep_checkpoints=1, sample_every=10**9, val_every=10**9, log_every=10,
        )
        start = time.perf_counter()
        result = train(cfg)
        seconds = time.perf_counter() - start
        restorer, _ = load_restorer(result.restorer)
        x = torch.rand(1, 3, 512, 512)
        with torch.inference_mode():
            restorer(x)
            t0 = time.perf_counter()
            restorer(x)
            mps = 512 * 512 / 1e6 / (time.perf_counter() - t0)
        scores = {}
        for sigma in (15.0, 25.0, 50.0):
            psnrs = []
            for i, clean in enumerate(cleans):
                noisy = add_noise(clean, sigma, seed=1000 + i)
                inp = torch.from_numpy(noisy).permute(2, 0, 1)[None].float() / 255.0
                with torch.inference_mode():
                    out = restorer(inp)[0].permute(1, 2, 0).numpy()
                psnrs.append(peak_signal_noise_ratio(clean, np.clip(np.round(out * 255), 0, 255).astype(np.uint8)))
            scores[f"psnr_sigma{sigma:g}"] = round(float(np.mean(psnrs)), 3)
        rows = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
        l1s = [r["warmup_l1"] for r in rows if r.get("event") == "step"]
        variants[name] = {
            "parameters": sum(p.numel() for p in build_restorer(model).parameters()),
            "macs_per_pixel": restorer_macs_per_pixel(model),
            "train_seconds": round(seconds, 1),
            "warmup_l1_last_5_logs": round(float(np.mean(l1s[-5:])), 4),
            "restore_mp_per_s_cpu_512": round(mps, 3),
            **scores,
        }
    noisy_scores = {
        f"psnr_sigma{s:g}": round(float(np.mean([
            peak_signal_noise_ratio(c, add_noise(c, s, seed=1000 + i)) for i, c in enumerate(cleans)])), 3)
        for s in (15.0, 25.0, 50.0)
    }  # fmt: skip
    report["noisy_input"] = noisy_scores
    report["variants"] = variants
    report["eval"] = f"{len(cleans)} images of the noisy half of CBSD432 (seed {args.seed}), 256x256 top-left crops"
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
