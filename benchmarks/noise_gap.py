"""Can a discriminator tell a noisy folder's real noise from the noise fitted to it, on the same scenes?

Issue 20 asks stage 2 to learn "the part of the noise that the fitted model gets wrong" with D_X.
D_X can only teach G_X what it can see. This measures what it can see, with the scene held fixed:
each noisy photo x is restored (x_hat, a bundled restorer) and re-noised with the noise fitted to
that photo (``noise.py``: signal-dependent, spatially blurred, channel-correlated, JPEG at the
photo's quality). A fresh image discriminator of the shape stage 2 trains (lir-lite-unet's D_X,
reading the image, or with --high-pass G the image minus its 3x3 mean times G, as
``train --disc-high-pass G`` builds it) is trained on random 64-px crops of half the photos and
scored on crops of the other half:

  real-vs-fitted        x       against  x_hat + fitted noise (JPEG as the file was saved)
  real-vs-fitted-nojpeg x       against  x_hat + fitted noise, no JPEG round trip
  real-vs-restored      x       against  x_hat (no noise): what the discriminator can see at all
  fitted-vs-fitted      x_hat + fitted noise against a second draw of it: chance, the control

Unpaired, D_X also sees two sets of scenes (CBSD432 against PolyU), which is the confound this
removes. x_hat loses some detail and keeps some noise, so a gap in the first row is an upper bound
on what the fitted noise gets wrong; no gap means D_X has nothing to teach G_X on this folder.

  python benchmarks/noise_gap.py runs/data/PolyU100-real --weights weights/lir-unet-real.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from invrep_cli.checkpoint import load_restorer
from invrep_cli.config import model_preset
from invrep_cli.data import list_images, read_image
from invrep_cli.losses import lsgan
from invrep_cli.models.discriminators import MultiScaleDiscriminator
from invrep_cli.noise import NoiseModel, as_saved, fit_each
from invrep_cli.training.noise_setup import evenly_spaced

CROP = 64


def auc(real: np.ndarray, fake: np.ndarray) -> float:
    """The chance that a real crop scores above a fake one (ties count half): 0.5 is blind."""
    scores = np.concatenate([real, fake])
    ranks = scores.argsort().argsort().astype(np.float64) + 1.0
    # mid-ranks for ties are not needed at float scores; the formula is Mann-Whitney's U
    u = ranks[: len(real)].sum() - len(real) * (len(real) + 1) / 2.0
    return float(u / (len(real) * len(fake)))


def crops(images: list[torch.Tensor], count: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` random CROP x CROP crops of 3 x H x W tensors, each from a random image."""
    out = []
    for _ in range(count):
        i = int(rng.integers(len(images)))
        _, h, w = images[i].shape
        top, left = int(rng.integers(h - CROP + 1)), int(rng.integers(w - CROP + 1))
        out.append(images[i][:, top : top + CROP, left : left + CROP])
    return torch.stack(out)


def score(disc: MultiScaleDiscriminator, batch: torch.Tensor) -> np.ndarray:
    """One score per crop (crops in [0, 1]): the mean over every scale's patch outputs."""
    with torch.no_grad():
        outs = disc(batch * 2.0 - 1.0)
    return torch.stack([o.mean(dim=(1, 2, 3)) for o in outs]).mean(0).numpy()


def pairing(
    name: str, real: list[torch.Tensor], fake: list[torch.Tensor], split: int, args: argparse.Namespace
) -> dict:
    """Train a fresh D on the first ``split`` images of both lists, score crops of the rest."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    config = model_preset(args.config)
    # D_X as stage 2 builds it, reading the image or (--high-pass) ModelConfig.disc_high_pass's input
    disc = MultiScaleDiscriminator(3, config.disc_width, config.disc_layers, config.disc_scales, args.high_pass)
    opt = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.999))
    for _ in range(args.steps):
        r = crops(real[:split], args.batch, rng)
        f = crops(fake[:split], args.batch, rng)
        outs = disc(torch.cat([r, f]) * 2.0 - 1.0)
        loss = lsgan([o[: args.batch] for o in outs], 1.0) + lsgan([o[args.batch :] for o in outs], 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    eval_rng = np.random.default_rng(args.seed + 1000)
    r = crops(real[split:], args.eval_crops, eval_rng)
    f = crops(fake[split:], args.eval_crops, eval_rng)
    real_s, fake_s = score(disc, r), score(disc, f)
    return {
        "pairing": name,
        "held_out_auc": round(auc(real_s, fake_s), 4),
        "accuracy": round(float(((real_s > 0.5).mean() + (fake_s <= 0.5).mean()) / 2.0), 4),
        "train_crops": args.steps * args.batch,
        "eval_crops": args.eval_crops,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("noisy_dir", type=Path)
    parser.add_argument("--weights", default="weights/lir-unet-real.safetensors")
    parser.add_argument("--images", type=int, default=40, help="evenly spaced photos; half train D, half score it")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eval-crops", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--config", default="lir-lite-unet", help="whose D_X shape to train")
    parser.add_argument("--pairings", default="real-vs-fitted,real-vs-fitted-nojpeg,real-vs-restored,fitted-vs-fitted")
    parser.add_argument("--high-pass", type=float, default=0.0,
                        help="D reads (crop - its 3x3 mean) x this (train --disc-high-pass); 0: the crop, as LIR's D_X")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-banding", action="store_true", help="fit no banding (the fit before it was modelled)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    picks = evenly_spaced(list_images(args.noisy_dir), args.images)
    restorer = load_restorer(args.weights)[0].eval()
    generator = torch.Generator().manual_seed(args.seed)
    real, restored, fitted_a, fitted_b, nojpeg = [], [], [], [], []
    images = [read_image(path) for path in picks]
    # the fits stage 1 draws from: JPEG quality from the file, level matched by synthesis, small
    # images pooled; an image with no flat areas to measure is left out
    fits, _, _ = fit_each(images, paths=picks, match=True, banding=not args.no_banding)
    for image, fit in zip(images, fits, strict=True):
        if fit is None:
            continue
        x = torch.from_numpy(image.transpose(2, 0, 1).copy())
        with torch.no_grad():
            x_hat = as_saved(restorer(x[None]).clamp(0, 1))
        own = NoiseModel(fitted=(fit,), jpeg_fraction=1.0)
        real.append(x)
        restored.append(x_hat[0])
        fitted_a.append(own.sample(x_hat, generator)[0])
        fitted_b.append(own.sample(x_hat, generator)[0])
        nojpeg.append(NoiseModel(fitted=(fit,), jpeg_fraction=0.0).sample(x_hat, generator)[0])
    if all(bool((x == x[:1]).all()) for x in real):
        # a gray folder (read as three equal channels): the restorer's output on it is not exactly
        # gray (restore averages it back to one channel), and a high-pass D sees colour at once;
        # compare in gray, as restore outputs a gray image, so that only the noise's shape differs
        def gray(images: list[torch.Tensor]) -> list[torch.Tensor]:
            return [as_saved(x.mean(0, keepdim=True)).expand(3, -1, -1) for x in images]

        restored, fitted_a, fitted_b, nojpeg = gray(restored), gray(fitted_a), gray(fitted_b), gray(nojpeg)
    # alternate photos go to training and scoring, so both halves span the folder's cameras
    order = list(range(0, len(real), 2)) + list(range(1, len(real), 2))
    split = (len(real) + 1) // 2
    sets = {
        "real-vs-fitted": (real, fitted_a),
        "real-vs-fitted-nojpeg": (real, nojpeg),
        "real-vs-restored": (real, restored),
        "fitted-vs-fitted": (fitted_b, fitted_a),
    }
    for name in args.pairings.split(","):
        a, b = sets[name]
        row = pairing(name, [a[i] for i in order], [b[i] for i in order], split, args)
        row.update(photos=len(real), weights=args.weights, config=args.config, high_pass=args.high_pass)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
