"""The noise level a conditioned restorer is told (``ModelConfig.level_input``, issue 17 item 2).

FFDNet feeds its network a noise-level map beside the image, so one network can be told "clean",
"faint" or "heavy" instead of guessing. Here the level is estimated from the image the restorer is
given, the same way in training (on each crop) and in restore (on the whole image, before tiling,
so every tile of an image is told the same level):

- **the estimator**: the median absolute value of the finest diagonal Haar wavelet band over 0.6745
  (Donoho & Johnstone 1994, the estimator of scikit-image's ``estimate_sigma``, which uses the db2
  wavelet and needs PyWavelets; here Haar in torch, so it runs on crops in the training step),
  averaged over channels. The median keeps edges from counting; fine texture still does, and
  correlated camera noise reads low. The network sees the image as well, so it can learn how far
  to trust the reading: that is why training uses the estimate and not the noise it drew.
- **the map**: one constant channel per image, the level in units of ``LEVEL_UNIT`` (σ 25 of 255
  reads 1).

``noise.py``'s per-image fit is not used because it needs hundreds of 16 x 16 blocks: a 64 px
training crop has 16.
"""

from __future__ import annotations

import numpy as np
import torch

#: the map holds level / LEVEL_UNIT: 1.0 for Gaussian noise of std 25 on the 0-255 scale
LEVEL_UNIT = 25.0 / 255.0
#: restore reads the level on at most this centre square of an image: the level is a property of
#: the whole photo, and the read stays bounded in memory on a 100-megapixel file
LEVEL_CROP = 2048
#: median |N(0, 1)|: turns a median absolute deviation into a standard deviation
MAD_TO_STD = 0.6744897501960817


def noise_level(images: torch.Tensor) -> torch.Tensor:
    """N x C x H x W images in [0, 1] -> N noise std estimates (0-1 scale), no gradient.

    Odd sizes lose their last row or column; an image under 2 x 2 pixels reads 0.
    """
    x = images.detach().float()
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    if h == 0 or w == 0:
        return torch.zeros(x.shape[0], device=x.device)
    x = x[..., :h, :w]
    # orthonormal Haar: the diagonal detail of each 2 x 2 block is (a - b - c + d) / 2
    diagonal = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) * 0.5
    mad = diagonal.abs().flatten(2).median(dim=2).values  # N x C
    return (mad / MAD_TO_STD).mean(dim=1)


def with_level(image: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """What a conditioned E_X reads: the N x C x H x W ``image`` and, as one more channel, its N
    levels (0-1 scale) as constant maps in ``LEVEL_UNIT``s."""
    n, _, h, w = image.shape
    level_map = (level.to(image.dtype) / LEVEL_UNIT).view(n, 1, 1, 1).expand(n, 1, h, w)
    return torch.cat([image, level_map], 1)


def image_level(pixels: np.ndarray) -> float:
    """An H x W x C image (float in [0, 1], or uint8 / uint16 samples) -> its noise level (0-1 scale),
    read on its centre ``LEVEL_CROP`` square: what restore tells a conditioned restorer for every
    tile of the image."""
    h, w = pixels.shape[:2]
    top, left = max(0, (h - LEVEL_CROP) // 2), max(0, (w - LEVEL_CROP) // 2)
    crop = pixels[top : top + LEVEL_CROP, left : left + LEVEL_CROP]
    crop = crop[..., None] if crop.ndim == 2 else crop
    peak = float(np.iinfo(crop.dtype).max) if np.issubdtype(crop.dtype, np.integer) else 1.0
    chw = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32)) / peak
    return float(noise_level(chw[None])[0])
