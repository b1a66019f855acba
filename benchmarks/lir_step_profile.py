"""Where one LIR (stage 2) step spends its time, phase by phase, on tensors (no folders).

Times ``LIRModel``'s phases for a preset: the codes for the discriminators, the ``repr_steps`` D_R
steps, the D_X/D_Y step and the generator step (forward + backward of every LIR term), against a
stage-1 step. Usage: python benchmarks/lir_step_profile.py [--config lir-lite-unet] [--batch 16]
[--crop 64] [--threads 2] [--steps 3] [--authors-gx]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from invrep_cli.config import MODEL_PRESETS, LossWeights, TrainConfig
from invrep_cli.data import parse_noise
from invrep_cli.noise import NoiseModel
from invrep_cli.training import LIRModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="lir-lite-unet", choices=sorted(MODEL_PRESETS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one untimed")
    parser.add_argument("--authors-gx", action="store_true", help="G_X in the authors' shape (as before 2026-12)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = MODEL_PRESETS[args.config]
    if args.authors_gx:
        config = dataclasses.replace(config, gx_res_blocks=None, gx_up_kernel=5)
    cfg = TrainConfig(out_dir="unused", clean_dir="unused", model=config, losses=LossWeights(semantic=0.0))
    model = LIRModel(config, cfg, warmup_steps=0, noise_model=NoiseModel(spec=parse_noise("gaussian:25")))
    model.train()
    g = torch.Generator().manual_seed(1)
    x, y = (torch.rand(args.batch, 3, args.crop, args.crop, generator=g) * 2 - 1 for _ in range(2))
    phases: dict[str, list[float]] = {}

    def timed(name: str, fn, *a):  # noqa: ANN001, ANN202 - a bench helper
        t0 = time.perf_counter()
        out = fn(*a)
        phases.setdefault(name, []).append(time.perf_counter() - t0)
        return out

    for i in range(1 + args.steps):
        codes = timed("codes for the discriminators", model.encode_for_discriminators, x, y)
        for _ in range(cfg.repr_steps):
            timed(f"D_R step (x{cfg.repr_steps})", model.representation_step, codes)
        timed("D_X/D_Y step", model.image_discriminator_step, x, y, codes)
        timed("generator step (every LIR term)", model.generator_step, x, y)
        if i == 0:
            phases.clear()  # the first iteration pays for allocation
    stage1 = LIRModel(config, cfg, warmup_steps=10**9, noise_model=model.noise_model)
    stage1.train()
    for i in range(1 + args.steps):
        t0 = time.perf_counter()
        stage1.train_step((x, y))
        if i:
            phases.setdefault("stage-1 step (for comparison)", []).append(time.perf_counter() - t0)
    per_step = {k: float(np.median(v)) * (cfg.repr_steps if k.startswith("D_R") else 1) for k, v in phases.items()}
    lir_total = sum(v for k, v in per_step.items() if not k.startswith("stage-1"))
    print(f"{args.config}, batch {args.batch}, {args.crop} px crops, {args.threads} thread(s), median of {args.steps}")
    for name, seconds in per_step.items():
        share = "" if name.startswith("stage-1") else f"  {100 * seconds / lir_total:5.1f} %"
        print(f"  {name:34s} {seconds:7.3f} s{share}")
    print(f"  {'LIR step, all phases':34s} {lir_total:7.3f} s")
    print("multiply-adds per pixel of one forward (torch.utils.flop_counter, 64 px input):")
    for name, macs in network_macs(model).items():
        print(f"  {name:34s} {macs:>10,.0f}")


def network_macs(model: LIRModel) -> dict[str, float]:
    """Multiply-adds per input pixel of each network's forward, as the LIR step calls them."""
    from torch.utils.flop_counter import FlopCounterMode

    nets = model.nets
    x = torch.rand(1, 3, 64, 64) * 2 - 1

    def count(fn):  # noqa: ANN001, ANN202 - a bench helper
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = fn()
        return counter.get_total_flops() / 2 / x[0, 0].numel(), out

    macs: dict[str, float] = {}
    macs["E_X (noisy_encoder)"], (code, features) = count(lambda: nets.noisy_encoder(x, with_skips=True))
    macs["E_Y (clean_encoder)"], _ = count(lambda: nets.clean_encoder(x, with_skips=True))
    macs["E_X^N (noise_encoder)"], noise = count(lambda: nets.noise_encoder(x))
    macs["G_Y (clean_decoder)"], _ = count(lambda: nets.clean_decoder(code, features, x))
    macs["G_X (noisy_decoder)"], _ = count(lambda: nets.noisy_decoder(torch.cat([code, noise], 1)))
    macs["D_X (one image discriminator)"], _ = count(lambda: nets.noisy_discriminator(x))
    macs["D_R"], _ = count(lambda: nets.representation_discriminator(code))
    return macs


if __name__ == "__main__":
    main()
