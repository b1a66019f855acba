"""What stage 2's G_X has learnt, read from a checkpoint: does its synthetic noisy image x_ba carry
the structure of the real noise that the fitted noise model lacks?

x_ba is made as training makes it (``--gx-noise-model``: y + n_fit + g x residual, with the run's
``--gx-residual`` and ``--gx-gate-scale``; without it, G_X's output) from crops of the clean folder
and the noise codes of crops of the noisy folder. Column banding is read by the noise fit's own
reader (``noise._column_offsets``) on each 64-px crop and averaged, in the 0-255 scale, for the real
noisy crops, the clean ones, y + fitted noise, G_X's output, x_ba and what the gate adds to y + n_fit.

    python benchmarks/gx_probe.py runs/band/hpx/checkpoints/step_00000921.pt runs/band/clean runs/band/noisy
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch

from invrep_cli.config import ModelConfig
from invrep_cli.data import list_images, read_image, to_tensor
from invrep_cli.models import build_models
from invrep_cli.noise import NoiseModel, _column_offsets
from invrep_cli.objectives import NoiseModelGX, TrainingForward, synthetic_noisy


def read_folder(folder: Path) -> list[np.ndarray]:
    """The folder's images, H x W x 3 in [0, 1], read as training reads them."""
    return [read_image(f) for f in list_images(folder)]


def random_crops(images: list[np.ndarray], count: int, size: int, rng: random.Random) -> torch.Tensor:
    """``count`` random ``size``-px crops of ``images``, N x 3 x size x size in [-1, 1]."""
    out = []
    for img in rng.choices(images, k=count):
        i, j = rng.randrange(img.shape[0] - size + 1), rng.randrange(img.shape[1] - size + 1)
        out.append(to_tensor(img[i : i + size, j : j + size]))
    return torch.stack(out)


def banding(images: torch.Tensor) -> float:
    """Mean column-banding std read in each image (0-255)."""
    a = ((images.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).double().numpy()
    return float(np.mean([_column_offsets(im)[1] for im in a]) * 255)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("clean", type=Path)
    ap.add_argument("noisy", type=Path)
    ap.add_argument("--crops", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()

    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    config = ModelConfig(**ckpt["model_config"])
    nets = build_models(config)
    for name, state in ckpt["networks"].items():
        getattr(nets, name).load_state_dict(state)
    for _, module in nets.items():
        module.eval()
    forward = TrainingForward(dict(nets.items()), level_input=config.level_input)
    run = ckpt.get("train_config") or {}
    gate = ckpt.get("noise_gate", torch.zeros(()))
    noise = NoiseModel.from_dict(ckpt["noise_model"])
    rng = random.Random(0)
    y = random_crops(read_folder(args.clean), args.crops, args.size, rng)
    x = random_crops(read_folder(args.noisy), args.crops, args.size, rng)
    torch.manual_seed(0)
    with torch.no_grad():
        code_y, _ = forward.encode("clean_encoder", y)
        noise_code = nets.noise_encoder(x)
        g_x = nets.noisy_decoder(torch.cat([code_y, noise_code], 1))
        # G_X's self-reconstruction of the real noisy crops (LIR's rec_noisy term): can it draw them?
        code_x, _ = forward.encode("noisy_encoder", x)
        x_rec = nets.noisy_decoder(torch.cat([code_x, noise_code], 1))
        fitted = noise.sample((y + 1) / 2) * 2 - 1
        if run.get("gx_noise_model"):
            residual, scale = run.get("gx_residual", "image"), float(run.get("gx_gate_scale", 1.0))
            torch.manual_seed(0)  # x_ba's noise is `fitted`'s draw: x_ba - fitted is the gated residual alone
            g_x_noise = NoiseModelGX(noise, gate, residual, scale)
            x_ba = synthetic_noisy(nets.noisy_decoder, code_y, noise_code, y, g_x_noise)
            opened = float(gate) * scale
        else:
            x_ba, opened = g_x, float("nan")
    print(
        f"{args.checkpoint} (step {ckpt['step']}): gate {opened:.4f}; column banding (0-255) in "
        f"real noisy {banding(x):.2f}, clean {banding(y):.2f}, y + fitted {banding(fitted):.2f}, "
        f"G_X {banding(g_x):.2f}, G_X's reconstruction of the noisy {banding(x_rec):.2f}, "
        f"x_ba {banding(x_ba):.2f}, x_ba - y - n_fit (the gated residual) {banding(x_ba - fitted):.2f}; "
        f"mean |G_X - y| {float((g_x - y).abs().mean()) * 127.5:.2f}, |x_ba - y - n_fit| "
        f"{float((x_ba - fitted).abs().mean()) * 127.5:.2f}"
    )


if __name__ == "__main__":
    main()
