"""VGG19 features for the semantic-consistency loss, built in plain torch (no torchvision).

Decisions on the flaws listed in LIR.md:

Layer. The paper says conv5_1, the authors' code cuts VGG19 at conv4_1 (torchvision
``features[:20]``; index 19 is conv4_1, before its ReLU). We use conv4_1: on 64 x 64 training crops
conv4_1 maps are 8 x 8 (three poolings) while conv5_1 maps would be 4 x 4, and the instance
normalisation in the loss estimates a mean and variance per channel from those positions; 16
positions give noisy statistics and almost no spatial layout to compare. conv4_1 is also cheaper.

Input normalisation. The authors feed Caffe-style BGR x 255 minus means to torchvision weights,
which were trained on RGB in [0, 1] normalised with the ImageNet mean/std. We use what the weights
expect: images in [-1, 1] are mapped to [0, 1] and normalised with mean (0.485, 0.456, 0.406) and
std (0.229, 0.224, 0.225) in RGB order.

Weights. torchvision's ``vgg19-dcbb9e9d.pth`` (key names ``features.N.weight/bias``). Looked up in
order: an explicit path (``--vgg-weights``), the environment variable ``INVREP_VGG_WEIGHTS``, the
cache (``$INVREP_HOME`` or ``platformdirs.user_cache_dir("invrep")``), else downloaded there from
``INVREP_VGG_URL`` (default: the official torchvision URL). A download is verified the way
torchvision's ``check_hash`` does it: the sha256 must start with the hex string in the file name
(``dcbb9e9d``). A full digest for this file is quoted by third parties but we could not verify it
here, so only the prefix is enforced. When nothing can be found or fetched, ``resolve_vgg`` returns
no module and a reason: the trainer then disables the semantic term and says so, never silently
using random weights. Files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from invrep_cli.errors import WeightsError

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: torchvision VGG19 "E" configuration up to conv4_1: channel counts, "M" = 2x2 max pool
_VGG19_TO_CONV4_1: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512)


class VGG19Features(nn.Module):
    """torchvision ``vgg19().features[:20]`` (conv1_1 .. conv4_1) with the same module indices, so
    its state dict keys are ``features.N.weight`` as in torchvision's file. Input: RGB in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = 3
        for i, spec in enumerate(_VGG19_TO_CONV4_1):
            if spec == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            assert isinstance(spec, int)
            layers.append(nn.Conv2d(ch, spec, 3, padding=1))
            if i < len(_VGG19_TO_CONV4_1) - 1:  # conv4_1 is taken before its ReLU, as features[:20]
                layers.append(nn.ReLU(inplace=True))
            ch = spec
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x + 1.0) * 0.5 - self.mean) / self.std
        return self.features(x)


def load_vgg_features(path: str | Path) -> VGG19Features:
    """Build the frozen, eval-mode feature extractor from a torchvision VGG19 state dict file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"VGG19 weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read VGG19 weights ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not a state dict")
    model = VGG19Features()
    wanted = model.state_dict().keys()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise WeightsError(f"{path}: not torchvision VGG19 weights (missing {', '.join(missing[:3])} ...)")
    try:
        model.load_state_dict({k: state[k] for k in wanted})
    except RuntimeError as exc:
        raise WeightsError(f"{path}: VGG19 weights have the wrong shapes ({exc})") from exc
    model.requires_grad_(False)
    return model.eval()


def cache_dir() -> Path:
    """Where VGG19 weights are cached: invrep's cache folder itself (``weights.cache_home``)."""
    from invrep_cli.weights import cache_home

    return cache_home()


def hash_prefix(url: str) -> str | None:
    """The hex digest prefix torchvision puts in its file names (``vgg19-dcbb9e9d.pth``)."""
    m = re.search(r"-([a-f0-9]{6,})\.", url.rsplit("/", 1)[-1])
    return m.group(1) if m else None


@dataclass
class VGGResolution:
    """Outcome of the weight lookup: a module, or None with the reason and what was tried."""

    module: VGG19Features | None
    source: str | None
    tried: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.tried)


def resolve_vgg(
    explicit: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    allow_download: bool = True,
    timeout: float = 30,
) -> VGGResolution:
    """Find VGG19 weights (see the module docstring for the order).

    An explicit path or ``INVREP_VGG_WEIGHTS`` that is missing or broken raises WeightsError: the
    user asked for that file. A failed cache lookup or download returns ``module=None`` and the
    list of what was tried, so the caller can warn and disable the semantic term.
    """
    if explicit:
        return VGGResolution(load_vgg_features(explicit), f"--vgg-weights {explicit}")
    env = os.environ.get("INVREP_VGG_WEIGHTS")
    if env:
        return VGGResolution(load_vgg_features(env), f"INVREP_VGG_WEIGHTS={env}")
    url = os.environ.get("INVREP_VGG_URL") or VGG19_URL
    cached = cache_dir() / url.rsplit("/", 1)[-1]
    tried = ["no --vgg-weights", "INVREP_VGG_WEIGHTS unset"]
    if cached.is_file():
        try:
            return VGGResolution(load_vgg_features(cached), f"cache {cached}")
        except WeightsError as exc:
            tried.append(f"cached file unusable ({exc})")
    else:
        tried.append(f"not in cache {cached}")
    if not allow_download:
        tried.append("download not allowed")
        return VGGResolution(None, None, tried)
    from invrep_cli.download import download_file

    try:
        download_file(url, cached, sha256_prefix=hash_prefix(url), progress=progress, timeout=timeout)
        return VGGResolution(load_vgg_features(cached), f"downloaded {url} to {cached}")
    except WeightsError as exc:
        tried.append(str(exc))
    return VGGResolution(None, None, tried)
