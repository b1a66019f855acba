"""LIR loss terms as plain functions ``name(pred, target, ...) -> Tensor``; ``weighted_total`` is the
one place that multiplies them by their weights and sums them.

Decisions on the flaws listed in LIR.md:

Background consistency blur. The paper writes Gaussian sigma = 5, 9, 15; the authors' code uses
5, 9, 15 as *kernel sizes* with sigma = 25, i.e. near box filters of effective sigma 1.4, 2.6, 4.3.
We follow the paper: true Gaussian blurs with sigma 5, 9 and 15 px (weights 0.25, 0.5, 1.0). The
point of the term is "keep the low frequencies of the input": at sigma >= 5 the blurred noise of a
sigma-25 input is below 1/255, so the term cannot reward reproducing noise, while box filters of
width 5 pass enough low-frequency noise (about 1/5 of its std) that copying it lowers the loss. The
kernel is truncated at 3 sigma and, because reflection padding needs pad < size, at ``size - 1``
pixels: on 64 x 64 crops the sigma-15 kernel is cut at radius 45 (of 63 possible), i.e. at 3 sigma,
so only crops under 46 px truncate it further; a truncated kernel is renormalised to sum 1.

Semantic consistency. See ``invrep_cli.vgg``: VGG19 up to conv4_1 (torchvision ``features[:20]``),
ImageNet mean/std normalisation of RGB in [0, 1] (what the torchvision weights were trained with),
features instance-normalised before the MSE.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from invrep_cli.config import LossWeights

#: Gaussian sigmas (px) and weights of the three background-consistency scales
BACKGROUND_SIGMAS: tuple[float, ...] = (5.0, 9.0, 15.0)
BACKGROUND_SCALE_WEIGHTS: tuple[float, ...] = (0.25, 0.5, 1.0)

#: which LossWeights field weighs each generator term
TERM_WEIGHTS: dict[str, str] = {
    "adv_noisy": "domain_adv",
    "adv_clean": "domain_adv",
    "repr_adv": "repr_adv",
    "rec_noisy": "self_rec",
    "rec_clean": "self_rec",
    "cycle_noisy": "cycle",
    "cycle_clean": "cycle",
    "latent": "latent",
    "background": "background",
    "semantic": "semantic",
}


def lsgan(pred: torch.Tensor | Sequence[torch.Tensor], target: float) -> torch.Tensor:
    """Least-squares GAN loss: mean((pred - target)^2), summed over discriminator scales."""
    preds = [pred] if isinstance(pred, torch.Tensor) else list(pred)
    return sum((p.float() - target).pow(2).mean() for p in preds)  # type: ignore[return-value]


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred.float() - target.float()).abs().mean()


def latent_penalty(z: torch.Tensor) -> torch.Tensor:
    """The authors' "KL": mean(z^2), pulling codes toward a zero-mean unit-noise-dominated range."""
    return z.float().pow(2).mean()


def gaussian_kernel1d(sigma: float, radius: int, device: torch.device | None = None) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflection padding, truncated at 3 sigma and at size - 1."""
    h, w = x.shape[-2:]
    radius = min(math.ceil(3 * sigma), h - 1, w - 1)
    if radius < 1:
        return x
    c = x.shape[1]
    k = gaussian_kernel1d(sigma, radius, x.device).to(x.dtype)
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def background_consistency(
    pred: torch.Tensor,
    target: torch.Tensor,
    sigmas: Sequence[float] = BACKGROUND_SIGMAS,
    weights: Sequence[float] = BACKGROUND_SCALE_WEIGHTS,
) -> torch.Tensor:
    """L1 between Gaussian-blurred ``pred`` and ``target`` at several sigmas, weighted."""
    pred, target = pred.float(), target.float()
    return sum(w * l1(gaussian_blur(pred, s), gaussian_blur(target, s)) for s, w in zip(sigmas, weights, strict=True))  # type: ignore[return-value]


def semantic_consistency(pred_features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """MSE between instance-normalised feature maps (content kept, per-image feature statistics
    such as noise energy ignored)."""
    return F.mse_loss(F.instance_norm(pred_features.float()), F.instance_norm(target_features.float()))


def weighted_total(terms: Mapping[str, torch.Tensor], weights: LossWeights) -> torch.Tensor:
    """The generator objective: sum of weight * term over the terms in ``TERM_WEIGHTS``."""
    unknown = set(terms) - set(TERM_WEIGHTS)
    if unknown:
        raise KeyError(f"no weight for loss terms {sorted(unknown)}")
    total = None
    for name, value in terms.items():
        weight = float(getattr(weights, TERM_WEIGHTS[name]))
        if weight == 0.0:
            continue
        total = weight * value if total is None else total + weight * value
    if total is None:
        raise ValueError("every loss weight is zero")
    return total
