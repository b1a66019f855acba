"""Can stage 2's G_X draw a noise structure at all? Train G_X and the noise encoder E_X^N alone to
reconstruct real noisy crops from their own codes, G_X(E_X(x) (+) E_X^N(x)) ~ x (LIR's rec_noisy
term, no adversary; LIR's latent noise on the codes with ``--latent-noise``), with E_X frozen as a
checkpoint has it, and read the column banding (the noise fit's own reader, 0-255) of the
reconstruction every ``--every`` steps.

In LIR, x_ba can only carry what G_X can draw. If G_X cannot redraw the stripes of an image whose
own codes it is given, D_X's gradient cannot teach it to draw them on a clean one either.

    python benchmarks/gx_capacity.py runs/band/hpx/checkpoints/step_00000721.pt runs/band/noisy --steps 1000
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
from gx_probe import banding, random_crops, read_folder  # this folder is on sys.path when run as a script

from invrep_cli.config import ModelConfig
from invrep_cli.losses import l1
from invrep_cli.models import build_models
from invrep_cli.objectives import with_latent_noise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="a training checkpoint: its E_X and networks' shapes")
    ap.add_argument("noisy", type=Path)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--latent-noise", action="store_true", help="LIR's unit noise on both codes while training")
    args = ap.parse_args()

    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    config = ModelConfig(**ckpt["model_config"])
    torch.manual_seed(0)
    nets = build_models(config)  # E_X^N and G_X fresh, as at stage 2's start
    e_x = nets.noisy_encoder
    e_x.load_state_dict(ckpt["networks"]["noisy_encoder"])
    e_x.eval().requires_grad_(False)
    e_n, g_x = nets.noise_encoder, nets.noisy_decoder
    opt = torch.optim.Adam([*e_n.parameters(), *g_x.parameters()], lr=args.lr, betas=(0.5, 0.999))

    images = read_folder(args.noisy)  # read once: a step's crops are cut from memory
    probe = random_crops(images, 32, args.size, random.Random(1))
    rng = random.Random(0)

    def reconstruct(x: torch.Tensor, noised: bool = False) -> torch.Tensor:
        codes = [e_x(x), e_n(x)]
        if noised:  # as stage 2's rec_noisy term decodes them
            codes = [with_latent_noise(c) for c in codes]
        return g_x(torch.cat(codes, 1))

    print(f"real noisy crops: column banding {banding(probe):.2f}", flush=True)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        e_n.train(), g_x.train()
        x = random_crops(images, args.batch, args.size, rng)
        loss = l1(reconstruct(x, args.latent_noise), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.every == 0 or step == args.steps:
            e_n.eval(), g_x.eval()
            with torch.no_grad():
                rec = reconstruct(probe)
            print(
                f"step {step}: L1 {float(loss.detach()):.4f}, reconstruction banding {banding(rec):.2f}, "
                f"|rec - x| {float((rec - probe).abs().mean()) * 127.5:.2f}/255, "
                f"{(time.perf_counter() - start) / step:.2f} s/step",
                flush=True,
            )


if __name__ == "__main__":
    main()
