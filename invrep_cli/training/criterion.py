"""A no-reference score of a restorer on the user's own noisy images: Stein's unbiased risk
estimate (SURE) of its mean squared error, under the noise fitted to each image.

For y = x + n with n ~ N(0, S) and any restorer f, E||f(y) - x||^2 = E||f(y) - y||^2 - tr(S) +
2 E[tr(S J_f(y))] (Stein's lemma; S may be correlated across pixels and channels). The last term
is estimated by Monte Carlo (Ramani, Blu, Unser 2008): b drawn from the fitted noise itself (so
E[b^T J b] = tr(S J)), tr(S J) ~ b . (f(y + e b) - f(y)) / e. That is "re-noise the input with the
fitted model and restore again", made into an estimate of the error against the clean image no
one has. Over-smoothing shows as a large ||f(y) - y||^2 that the divergence does not pay back;
leaving noise in, as a large divergence. The signal-dependent variance is taken at the noisy
value, and clipping, quantisation and JPEG are outside the Gaussian model: the estimate ranks
restorers, it is not a PSNR to quote against a reference.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from invrep_cli.noise import ImageNoise, fit_images, sample_fitted

RestoreFn = Callable[[torch.Tensor], torch.Tensor]
#: the Monte-Carlo step: the perturbation is this share of a noise draw (small against the noise,
#: large against fp32 rounding of the restorer's output)
EPSILON = 0.01


@dataclass(frozen=True)
class NoisyImage:
    """One image of the noisy folder (H x W x 3 in [0, 1]) with the noise fitted to it."""

    pixels: np.ndarray
    noise: ImageNoise
    #: whether ``noise`` is the folder's fit rather than this image's own (``prepare``'s fallback)
    folder_fit: bool = False


def prepare(images: Sequence[np.ndarray], fallback: ImageNoise | None = None) -> list[NoisyImage]:
    """The images whose noise can be fitted (flat areas to measure it), each with its fit (small
    images pooled, as the warm start fits them). ``fallback`` (the run's fit of the whole folder)
    stands in for the images that cannot be fitted: a few small dark frames hold too few flat
    unclipped blocks together (a fluorescence field, where a block with one pixel at 0 is not
    read), though the folder as a whole fitted."""
    out = []
    fits, _ = fit_images(images)
    for img, fit in zip(images, fits, strict=True):
        if fit is not None or fallback is not None:
            pixels = np.ascontiguousarray(img, dtype=np.float32)
            out.append(NoisyImage(pixels, fallback, True) if fit is None else NoisyImage(pixels, fit))
    return out


@torch.no_grad()
def sure_mse(restore: RestoreFn, image: NoisyImage, seed: int = 0) -> float:
    """SURE of the restorer's mean squared error per sample (0-1 scale) on one noisy image."""
    y = torch.from_numpy(image.pixels.transpose(2, 0, 1)).unsqueeze(0)
    generator = torch.Generator().manual_seed(seed)
    fit = image.noise
    # unclipped: a draw of N(0, S(y)), Gaussian even where the fit counts photons (SURE's divergence
    # is taken along a Gaussian probe)
    b = sample_fitted(y, [dataclasses.replace(fit, photons=False)], generator) - y
    variance = (
        torch.tensor(fit.gain)[None, :, None, None] * y.clamp(0, 1) + torch.tensor(fit.floor)[None, :, None, None]
    ).clamp(min=0) + (fit.column_std**2 + fit.row_std**2)  # banding adds its offsets' variance to every pixel
    restored = restore(y).float()
    perturbed = restore(y + EPSILON * b).float()
    divergence = (b * (perturbed - restored)).sum() / EPSILON
    risk = ((restored - y) ** 2).sum() - variance.sum() + 2.0 * divergence
    return float(risk) / y.numel()


def estimated_psnr(restore: RestoreFn, images: Sequence[NoisyImage], seed: int = 0) -> float | None:
    """10 log10(1 / mean SURE) over the images: higher is better (a ranking, see the module docstring).
    None where the mean SURE is not positive, which no squared error is: heavy noise clips, and a
    clipped pixel's noise is smaller than the Gaussian model's variance that SURE takes off (on std
    50 of 255 every run read 100 dB before)."""
    risks = [sure_mse(restore, img, seed + k) for k, img in enumerate(images)]
    mse = float(np.mean(risks))
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else None
