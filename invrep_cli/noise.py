"""Noise models for the warm start (stage 1), and their estimation from a folder of noisy images.

Stage 1 of ``invrep train`` needs no pairs: it draws noise from a model of the *noisy* domain onto
crops of the *clean* domain and trains E_X and G_Y to undo it (LIR's cross-cycle path with the model
standing in for G_X). The model is either the ``--synthetic`` spec itself or, for a real noisy
folder, fitted to it:

- **signal-dependent**: per channel, variance = gain * I + floor (I in [0, 1]), the Poisson-Gaussian
  model of a sensor. Drawn Gaussian, unless the fit reads *counted photons* (``photons``): where the
  noise is white, not a JPEG, and skewed as shot noise is (its third moment grows as gain^2 * I,
  ``_shot_ratio``), the signal-dependent part is drawn as gain * Poisson(I / gain) - I. A few-photon
  image's noise is discrete and skewed (a dark field is mostly 0 or 1 photon), which a Gaussian of
  the same variance does not draw;
- **spatially correlated**: white noise filtered by a Gaussian of std ``blur`` pixels, renormalised
  to unit variance (demosaicing and JPEG spread noise over neighbouring pixels);
- **correlated across channels**: a 3 x 3 correlation matrix (demosaicing again); a gray file's
  noise is one noise in all three channels;
- **banded**: an offset added to every pixel of a column (and of a row), drawn afresh per image:
  a CMOS sensor's column read-out noise. Read from the medians, down each column, of each pixel
  less its row neighbours (content and white noise average out along a column; the offsets do not),
  and taken out of the image before the block fit below, so that it is not read as white noise;
- **compressed**: a JPEG file's quality and subsampling (read from its quantisation tables) go into
  its fit; a share of the crops is saved as JPEG at that quality, and since JPEG hides part of the
  noise from the estimator, the level and blur of such fits are corrected by synthesis
  (``match_fit``).

One set of parameters is fitted per image and stage 1 draws a random image's set per crop, so a
folder of mixed cameras and ISOs gives a mixture rather than one average model.

The estimator works on 16 x 16 blocks: a plane is fitted to each block and channel and the residual
variance kept with the block's mean. Texture only adds variance, so within each intensity bin a low
percentile of the block variances is taken as the noise; the bias of that percentile, of the plane
fit and of spatial correlation is measured once by running the same estimator on pure noise of
known parameters (``_calibration``), not assumed. scikit-image's ``estimate_sigma`` (a wavelet
median of the finest scale) is the usual choice; it sees only the finest-scale part of correlated
noise, which is why camera noise looks 3-4 times weaker to it than it is.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from invrep_cli.data import CORRELATED_BLUR, SHOT_SHARE, NoiseSpec, parse_noise

#: block size of the estimator. Not 8: JPEG quantises each 8 x 8 block's high frequencies away in
#: flat areas, so within a JPEG block camera noise is almost a plane and a plane fit saw none of it
#: (31 of PolyU's 100 noisy photos measured as noiseless with 8, 3 with 16)
BLOCK = 16
#: percentile of block variances taken in each intensity bin (low: texture only adds variance)
PERCENTILE = 10.0
#: intensity bins of the signal-dependent fit
BINS = 16
#: fewest blocks an intensity bin needs to be used
MIN_BLOCKS = 24
#: a dim image can lie in the first of the BINS bins over [0, 1], where no line can be fitted (a
#: 12-bit camera's counts in a 16-bit file fill 1/16 of the range): one whose blocks lie below
#: DIM_TOP of the range is binned over its own range instead. Only there: an 8-bit image that dim
#: holds 16 levels, and the fits of brighter ones stay as they were
DIM_TOP = 1 / BINS
#: blocks a pooled group of small images gathers before it is fitted (one 512 x 512 image's)
POOL_BLOCKS = 1024
#: banding: neighbours on each side that a pixel is compared with, and the least offset std (0-1)
#: read as banding (clean photos read up to about 2 in 0-255, long straight edges: 1 of CBSD432's
#: 400 training photos is read as banded)
BAND_REACH = 3
BAND_MIN = 1.5 / 255.0
#: standard errors by which the column medians' spread must exceed the white noise's share of it
#: to be read as banding: at 4, 4 of the 200 noisy 180-px crops of benchmarks/new_domain.py's
#: correlated noise (std 20, none banded) read banding, 28 with no test
BAND_Z = 4.0
#: heavy noise's banding test (``_column_offsets``): the variance of a mean of 2 BAND_REACH medians
#: of a pixel less one neighbour, over that of the median of a pixel less its neighbours' mean, on
#: white Gaussian noise (0.766 and 0.781 measured on two sets of 200 images of 256 x 256,
#: benchmarks/heavy_banding.py; medians sharing their pixel correlate as 2/pi arcsin(1/2) = 1/3,
#: which gives 0.762)
PAIRWISE_SPREAD = 0.78
#: blur std (px) grid of the calibration; beyond it, noise is a smooth pattern rather than grain
BLUR_GRID = tuple(round(0.1 * i, 1) for i in range(0, 21))
#: channel correlation grid of the calibration (selecting low-variance blocks lowers correlation)
CORR_GRID = (0.0, 0.2, 0.4, 0.6, 0.8, 0.95)
#: counted photons: the least ratio of the skew-implied photon gain to the fitted gain, and the most
#: blur, at which the signal-dependent noise is read as shot noise (benchmarks/shot_test.py: BSD68
#: with Poisson noise at 30 photons full scale reads a median 0.93, with Gaussian noise of the same
#: variance 0.17; skew from texture under signal-dependent noise keeps the Gaussian case above 0).
#: Blurred noise (demosaiced camera noise, CC15, PolyU) is not tested: blur mixes the skew away.
#: Gray fits are not tested either: they count photons whenever white (``_fit_blocks``, Round WHITE).
#: There is no gate on the photon count: at many photons texture's skew (3 * gain * E[texture^2])
#: can outweigh shot noise's (gain^2 * I), but a wrong call there cost nothing measured (README,
#: Round GATE: counted draws on the banded testbed's Gaussian noise scored 0.17 dB above Gaussian
#: ones), while a gate at 100 photons full scale cost 0.24 dB at 150 and drew a dim sample's few
#: photons Gaussian (counted at full scale, they were many)
SHOT_RATIO = 0.65
SHOT_MAX_BLUR = 0.6
#: the level spread ``invrep train --noise-scale auto`` draws at (each crop's noise std times a factor
#: drawn log-uniformly in the range). Blurred noise (demosaiced or JPEG'd camera noise) gets the wide
#: one: the block estimator reads its level from the part of its variance a plane fit leaves, where a
#: small error in the measured correlation is a large one in the level, and on camera folders the wide
#: spread scored best without a reference (README, Round SPREAD-CAM). White noise's level is read
#: well, and the narrow spread scored +0.10 dB on average over three white folders, none lower by more
#: than 0.001 (README, Round SPREAD-WHITE)
BLURRED_LEVEL_RANGE = (0.6, 2.5)
WHITE_LEVEL_RANGE = (0.8, 1.25)
#: heavy noise: the shares of a block's samples that may be clipped (at 0 or 1) and the block still
#: be read, tried in turn until some image of the folder can be fitted. A block with one clipped
#: sample is biased (clipping cuts the noise's tail), so 0 comes first, and a folder that fits there
#: fits as before. Of a 16 x 16 block's samples about one lies beyond 2.9 std: at std 35 of 255 most
#: blocks of a photo hold a clipped sample and at 50 nearly all do, so no such folder could be
#: fitted (README, Round HEAVY: std 50 at mid-gray now reads 51.2, std 75 reads 69.2)
CLIP_SHARES = (0.0, 0.05, 0.1, 0.2)


#: the channel correlation of a gray image's noise: one noise in all three channels
GRAY_CORR = ((1.0, 1.0, 1.0),) * 3

# ---------------------------------------------------------------------------------------------
# the fitted model


@dataclass(frozen=True)
class ImageNoise:
    """Noise of one image: variance = gain * I + floor per channel, spatial blur, channel correlation."""

    gain: tuple[float, float, float]
    floor: tuple[float, float, float]
    blur: float
    channel_corr: tuple[tuple[float, float, float], ...]
    #: IJG-equivalent quality of the JPEG the noisy file was saved as (0: not a JPEG) and its chroma
    #: subsampling (PIL's code: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0)
    jpeg_quality: int = 0
    jpeg_subsampling: int = 2
    #: std (0-1) of the offsets added to each column and to each row (banding; 0: none)
    column_std: float = 0.0
    row_std: float = 0.0
    #: the gain part is shot noise, drawn as gain * Poisson(I / gain) - I (counted photons)
    photons: bool = False

    def std_at(self, intensity: float) -> list[float]:
        """Noise std per channel at an intensity in [0, 1] (0-1 scale)."""
        return [math.sqrt(max(g * intensity + f, 0.0)) for g, f in zip(self.gain, self.floor, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "gain": [round(v, 8) for v in self.gain],
            "floor": [round(v, 8) for v in self.floor],
            "blur": round(self.blur, 4),
            "channel_corr": [[round(v, 4) for v in row] for row in self.channel_corr],
            "jpeg_quality": self.jpeg_quality,
            "jpeg_subsampling": self.jpeg_subsampling,
            "column_std": round(self.column_std, 6),
            "row_std": round(self.row_std, 6),
            "photons": self.photons,
        }

    def scaled(self, factor: float) -> ImageNoise:
        """The same noise with its std multiplied by ``factor``."""
        return dataclasses.replace(
            self,
            gain=tuple(g * factor**2 for g in self.gain),  # type: ignore[arg-type]
            floor=tuple(f * factor**2 for f in self.floor),  # type: ignore[arg-type]
            column_std=self.column_std * factor,
            row_std=self.row_std * factor,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageNoise:
        return cls(
            gain=tuple(float(v) for v in d["gain"]),  # type: ignore[arg-type]
            floor=tuple(float(v) for v in d["floor"]),  # type: ignore[arg-type]
            blur=float(d["blur"]),
            channel_corr=tuple(tuple(float(v) for v in row) for row in d["channel_corr"]),
            jpeg_quality=int(d.get("jpeg_quality", 0)),
            jpeg_subsampling=int(d.get("jpeg_subsampling", 2)),
            # fits saved before banding was modelled have none
            column_std=float(d.get("column_std", 0.0)),
            row_std=float(d.get("row_std", 0.0)),
            # and before shot noise was read, none was
            photons=bool(d.get("photons", False)),
        )


@dataclass(frozen=True)
class NoiseModel:
    """What stage 1 draws noise from: a ``--synthetic`` spec, or per-image fits of a noisy folder."""

    spec: NoiseSpec | None = None
    fitted: tuple[ImageNoise, ...] = field(default_factory=tuple)
    source: str = ""
    #: fitted models only: each crop's noise std is scaled by a factor drawn log-uniformly in this
    #: range (``invrep train --noise-scale``, TrainConfig.noise_scale)
    level_range: tuple[float, float] = (1.0, 1.0)
    #: fitted models only: the share of crops that go through a JPEG round trip at their image's
    #: quality (the rest keep the noise as it was before compression); no effect on fits of non-JPEG
    #: files (``invrep train --jpeg-fraction``)
    jpeg_fraction: float = 0.5
    #: fitted models only: how the fitted levels were corrected by synthesis (``match_fit``), and a
    #: white folder's blur read back on the clean folder (``blur_readback.unblur_white``)
    level_note: str = ""
    #: fitted models only: the share of clipped samples a block could hold and still be read
    #: (CLIP_SHARES; above 0 only for heavy noise)
    clip_share: float = 0.0
    #: ``--noise-mix``: (component, share) per kind of crop, shares summing to 1; a component is
    #: ``clean`` (no noise: the restorer must leave such crops as they are), ``own`` (this model's
    #: spec or fits) or a spec (``gaussian:0-50``, ``poisson-gaussian:2-40``). Empty: ``own`` alone
    mix: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if (self.spec is None) == (not self.fitted):
            raise ValueError("a noise model is either a spec or a non-empty set of fits")

    def typical_fit(self) -> ImageNoise | None:
        """The fit whose std at mid-gray is the median of the folder's (None for a spec): the
        folder's noise, for an image whose own cannot be measured."""
        if not self.fitted:
            return None
        order = sorted(self.fitted, key=lambda f: float(np.mean(f.std_at(0.5))))
        return order[(len(order) - 1) // 2]

    def describe(self) -> str:
        text = self._describe_own()
        if self.mix:
            text = f"mixed per crop: {describe_mix(self.mix)}; own = {text}"
        return text

    def _describe_own(self) -> str:
        if self.spec is not None:
            return f"{self.spec.describe()} (the --synthetic spec)"
        text = summarize(self.fitted) + (f", fitted on {self.source}" if self.source else "")
        if self.level_note:
            text += f"; {self.level_note}"
        if self.clip_share:
            text += f"; heavy noise: blocks with up to {self.clip_share:.0%} clipped samples read"
        if self.level_range != (1.0, 1.0):
            text += f"; drawn at {self.level_range[0]:g}-{self.level_range[1]:g}x the fitted std"
        if any(f.jpeg_quality for f in self.fitted):
            text += f"; {self.jpeg_fraction:g} of the crops saved as JPEG at their image's quality"
        return text

    def to_dict(self) -> dict[str, Any]:
        mix = {"mix": [[name, share] for name, share in self.mix]} if self.mix else {}
        if self.spec is not None:
            return {"spec": self.spec.describe(), "source": self.source, **mix}
        return {
            **mix,
            "fitted": [f.to_dict() for f in self.fitted],
            "source": self.source,
            "level_range": list(self.level_range),
            "jpeg_fraction": self.jpeg_fraction,
            "level_note": self.level_note,
            "clip_share": self.clip_share,
            "summary": summarize(self.fitted),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NoiseModel:
        mix = tuple((str(name), float(share)) for name, share in d.get("mix", ()))
        if "spec" in d:
            return cls(spec=parse_noise(d["spec"]), source=d.get("source", ""), mix=mix)
        return cls(
            mix=mix,
            fitted=tuple(ImageNoise.from_dict(f) for f in d["fitted"]),
            source=d.get("source", ""),
            level_range=tuple(d.get("level_range", (1.0, 1.0))),  # type: ignore[arg-type]
            # models saved before JPEG was modelled have no "jpeg_fraction": their fits have no quality
            jpeg_fraction=float(d.get("jpeg_fraction", 0.5)),
            level_note=str(d.get("level_note", "")),
            clip_share=float(d.get("clip_share", 0.0)),
        )

    def sample(self, clean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noisy version of ``clean`` (N x 3 x H x W in [0, 1]), clipped and quantised to 8 bit as a
        saved noisy file would be. Draws from the global torch RNG (or ``generator``) on clean's device."""
        if not self.mix:
            return self._sample_own(clean, generator)
        # one component per crop, by its share; each component draws its crops in one call
        shares = torch.tensor([share for _, share in self.mix], dtype=torch.float64)
        pick = torch.multinomial(shares, clean.shape[0], replacement=True, generator=_cpu_generator(generator))
        noisy = as_saved(clean)  # "clean" crops: as an 8-bit file holds them
        for k, (name, _) in enumerate(self.mix):
            idx = (pick == k).nonzero().flatten().to(clean.device)
            if name == "clean" or idx.numel() == 0:
                continue
            part = clean[idx]
            if name == "own":
                out = self._sample_own(part, generator)
            else:
                out = as_saved(sample_spec(part, _component_spec(name), generator))
            noisy[idx] = out
        return noisy

    def _sample_own(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.spec is not None:
            return as_saved(sample_spec(clean, self.spec, generator))
        noisy, picks = sample_fitted(clean, self.fitted, generator, self.level_range, return_picks=True)
        noisy = as_saved(noisy)
        jpeg = [i for i, k in enumerate(picks) if self.fitted[k].jpeg_quality > 0]
        if jpeg and self.jpeg_fraction > 0:
            u = torch.rand(len(jpeg), generator=generator, device="cpu" if generator is None else generator.device)
            for i, draw in zip(jpeg, u.tolist(), strict=True):
                if draw < self.jpeg_fraction:
                    fit = self.fitted[picks[i]]
                    noisy[i] = jpeg_roundtrip(noisy[i], fit.jpeg_quality, fit.jpeg_subsampling)
        return noisy


def as_saved(noisy: torch.Tensor) -> torch.Tensor:
    """[0, 1] values clipped and quantised to 8 bit, as a saved noisy file holds them."""
    return torch.round(noisy.clamp(0.0, 1.0) * 255.0) / 255.0


@functools.lru_cache(maxsize=32)
def _component_spec(name: str) -> NoiseSpec:
    """A --noise-mix spec component, parsed once (sample runs every training step)."""
    return parse_noise(name)


def _cpu_generator(generator: torch.Generator | None) -> torch.Generator | None:
    """torch.multinomial on CPU takes only a CPU generator: a CUDA one draws through the global RNG."""
    return generator if generator is None or generator.device.type == "cpu" else None


def describe_mix(mix: Sequence[tuple[str, float]]) -> str:
    return ", ".join(f"{name} {share:.2g}" for name, share in mix)


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """``clean=0.15,gaussian:0-50=0.3,own=0.3`` -> ((component, share), ...) with the shares
    normalised to sum to 1; ValueError with the reason otherwise."""
    parts: list[tuple[str, float]] = []
    for item in text.split(","):
        name, sep, weight = item.strip().rpartition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise ValueError(f"{item.strip()!r}: expected COMPONENT=SHARE")
        try:
            share = float(weight)
        except ValueError:
            raise ValueError(f"{item.strip()!r}: share {weight!r} is not a number") from None
        if not share > 0:
            raise ValueError(f"{item.strip()!r}: share must be positive")
        if name not in ("clean", "own"):
            try:
                name = parse_noise(name).describe()
            except Exception:
                raise ValueError(f"{name!r}: not clean, own or a noise spec such as gaussian:0-50") from None
        if name in (n for n, _ in parts):
            raise ValueError(f"{name!r} is given twice")
        parts.append((name, share))
    total = sum(share for _, share in parts)
    return tuple((name, share / total) for name, share in parts)


def summarize(fits: Sequence[ImageNoise]) -> str:
    """One line: median noise std (0-255) at mid-gray and its range, median blur, mean channel correlation."""
    mid = np.array([_level(f) for f in fits]) * 255.0
    blur = np.array([f.blur for f in fits])
    corr = np.array([_mean_corr(f) for f in fits])
    jpeg = [f.jpeg_quality for f in fits if f.jpeg_quality]
    banded = [f for f in fits if f.column_std or f.row_std]
    shot = sum(f.photons for f in fits)
    text = (
        f"fitted per image on {len(fits)} images: std at mid-gray {np.median(mid):.2f} (0-255; "
        f"{mid.min():.2f}-{mid.max():.2f}), spatial blur {np.median(blur):.2f} px, "
        f"channel correlation {corr.mean():.2f}"
    ) + (f", JPEG quality {int(np.median(jpeg))} (median of {len(jpeg)} JPEG files)" if jpeg else "")
    if banded:
        cols = np.median([f.column_std for f in banded]) * 255.0
        rows = np.median([f.row_std for f in banded]) * 255.0
        text += f", banding in {len(banded)} images (offset std {cols:.2f} per column, {rows:.2f} per row, median)"
    if shot:
        text += f", counted photons (shot noise drawn as Poisson) in {shot} images"
    return text


def _randn(shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(*shape, device=like.device, dtype=like.dtype, generator=generator)


def sample_spec(clean: torch.Tensor, spec: NoiseSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    n = clean.shape[0]
    if spec.kind == "gaussian":
        u = torch.rand(n, 1, 1, 1, device=clean.device, dtype=clean.dtype, generator=generator)
        sigma = (spec.low + (spec.high - spec.low) * u) / 255.0
        return clean + sigma * _randn(clean.shape, clean, generator)
    if spec.kind in ("poisson-gaussian", "correlated"):
        u = torch.rand(2, n, 1, 1, 1, device=clean.device, dtype=clean.dtype, generator=generator)
        std_mid = (spec.low + (spec.high - spec.low) * u[0]) / 255.0
        shot = SHOT_SHARE[0] + (SHOT_SHARE[1] - SHOT_SHARE[0]) * u[1]
        var = std_mid**2 * (shot * clean.clamp(0.0, 1.0) / 0.5 + (1.0 - shot))
        white = _randn(clean.shape, clean, generator)
        if spec.kind == "correlated":
            lo, hi = CORRELATED_BLUR
            blurs = lo + (hi - lo) * torch.rand(n, device=clean.device, dtype=clean.dtype, generator=generator)
            white = blurred(white, blurs)
        return clean + var.sqrt() * white
    return torch.poisson(clean.clamp(min=0.0) * spec.low, generator=generator) / spec.low


def gaussian_kernels(blurs: torch.Tensor, radius: int) -> torch.Tensor:
    """K x 1 x (2r+1) x (2r+1) Gaussian kernels with unit sum of squares (so filtered unit white
    noise keeps unit variance); blur 0 is the identity."""
    coords = torch.arange(-radius, radius + 1, device=blurs.device, dtype=blurs.dtype)
    sq = coords[None, :, None] ** 2 + coords[None, None, :] ** 2
    s = blurs.clamp(min=1e-3)[:, None, None]
    k = torch.exp(-sq / (2 * s**2))
    k = k / k.pow(2).sum(dim=(1, 2), keepdim=True).sqrt()
    return k[:, None]


def blurred(white: torch.Tensor, blurs: torch.Tensor) -> torch.Tensor:
    """N x C x H x W white noise, each image filtered by a Gaussian of its own std (px) with unit
    sum of squares: spatially correlated, same variance (blur 0: unchanged)."""
    if float(blurs.max()) <= 0:
        return white
    n, c, h, w = white.shape
    radius = max(1, int(math.ceil(3 * float(blurs.max()))))
    radius = min(radius, h - 1, w - 1)  # reflect padding needs pad < size
    kernels = gaussian_kernels(blurs.to(white.dtype), radius).repeat_interleave(c, dim=0)  # (n*c) x 1 x k x k
    padded = F.pad(white.reshape(1, n * c, h, w), (radius,) * 4, mode="reflect")
    return F.conv2d(padded, kernels, groups=n * c).reshape(n, c, h, w)


def sample_fitted(
    clean: torch.Tensor,
    fits: Sequence[ImageNoise],
    generator: torch.Generator | None = None,
    level_range: tuple[float, float] = (1.0, 1.0),
    return_picks: bool = False,
) -> Any:
    """``clean`` plus noise drawn from a random fit per image (and, with ``return_picks``, the index
    of each image's fit)."""
    n, c, h, w = clean.shape
    dev, dt = clean.device, clean.dtype
    pick = torch.randint(len(fits), (n,), generator=generator, device="cpu" if generator is None else generator.device)
    chosen = [fits[int(i)] for i in pick.cpu()]
    gain = torch.tensor([f.gain for f in chosen], device=dev, dtype=dt)[:, :c, None, None]
    floor = torch.tensor([f.floor for f in chosen], device=dev, dtype=dt)[:, :c, None, None]
    blur = torch.tensor([f.blur for f in chosen], device=dev, dtype=dt)
    corr = torch.tensor([f.channel_corr for f in chosen], device=dev, dtype=torch.float64)
    white = blurred(_randn((n, c, h, w), clean, generator), blur)
    if c == 3:
        eye = torch.eye(3, device=dev, dtype=torch.float64)
        mix = torch.linalg.cholesky(corr + 1e-6 * eye).to(dt)
        white = torch.einsum("nij,njhw->nihw", mix, white)
        # a gray fit's noise is exactly gray (the Cholesky factor of all ones, regularised, is not)
        gray = (corr == 1.0).all(dim=(1, 2))[:, None, None, None]
        white = torch.where(gray, white[:, :1].expand_as(white), white)
    std = (gain * clean.clamp(0.0, 1.0) + floor).clamp(min=0.0).sqrt()
    factor = torch.ones(n, 1, 1, 1, device=dev, dtype=dt)  # each crop's std factor, banding's too
    if level_range != (1.0, 1.0):
        lo, hi = math.log(level_range[0]), math.log(level_range[1])
        u = torch.rand(n, 1, 1, 1, generator=generator, device=pick.device)
        factor = torch.exp(lo + (hi - lo) * u).to(dev, dt)
        std = std * factor
    noise = std * white
    photons = [i for i, f in enumerate(chosen) if f.photons]
    if photons:
        # shot noise as counts; the floor stays Gaussian (read noise). No other fit draws from the
        # Poisson stream, so models without counted photons draw exactly as before it existed.
        k = torch.tensor(photons, device=dev)
        noise[k] = _shot_noise(clean[k], gain[k] * factor[k] ** 2, generator) + (
            floor[k].clamp(min=0.0).sqrt() * factor[k] * white[k]
        )
    noisy = clean + noise
    bands = [(f.column_std, f.row_std) for f in chosen]
    if any(col or row for col, row in bands):
        # the same offset in every channel: read-out adds it before the colour pipeline mixes them
        col_std, row_std = torch.tensor(bands, device=dev, dtype=dt).unbind(1)
        columns = col_std[:, None, None, None] * _randn((n, 1, 1, w), clean, generator)
        rows = row_std[:, None, None, None] * _randn((n, 1, h, 1), clean, generator)
        noisy = noisy + factor * (columns + rows)
    return (noisy, [int(i) for i in pick.tolist()]) if return_picks else noisy


def _shot_noise(clean: torch.Tensor, gain: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """gain * Poisson(I / gain) - I for N x C x H x W crops (``gain`` N x C x 1 x 1); a gray crop (three
    equal channels) gets one draw in all three, as the sensor counted one set of photons."""
    signal = clean.clamp(0.0, 1.0)
    g = gain.clamp(min=1e-12)
    counts = torch.poisson(signal / g, generator=generator) * g - signal
    if clean.shape[1] == 3:
        gray = (clean[:, 1:] == clean[:, :1]).all(dim=1).flatten(1).all(dim=1)[:, None, None, None]
        counts = torch.where(gray, counts[:, :1].expand_as(counts), counts)
    return torch.where(gain > 0, counts, torch.zeros_like(counts))


def jpeg_roundtrip(image: torch.Tensor, quality: int, subsampling: int = 2) -> torch.Tensor:
    """A C x H x W image in [0, 1] (C = 1 or 3, 8-bit values) saved as JPEG and read back (Pillow,
    libjpeg's IJG tables at ``quality``), on the image's device."""
    from PIL import Image

    arr = torch.round(image.detach().clamp(0, 1) * 255).to("cpu", torch.uint8)
    arr_np = arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr_np).save(buf, "JPEG", quality=int(quality), subsampling=int(subsampling))
    buf.seek(0)
    back = np.asarray(Image.open(buf).convert("L" if arr.shape[0] == 1 else "RGB"))
    out = torch.from_numpy(back.copy()).to(image.device, image.dtype) / 255.0
    return out[None] if out.ndim == 2 else out.permute(2, 0, 1)


#: libjpeg's (IJG) base luminance table, in the natural (row-major) order Pillow reports tables in
_IJG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip


def _ijg_table(quality: int) -> np.ndarray:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((np.array(_IJG_LUMA) * scale + 50) / 100), 1, 255)


def jpeg_settings(path: str | Path) -> tuple[int, int] | None:
    """(IJG-equivalent quality, chroma subsampling) of a JPEG file, read from its luminance
    quantisation table (the quality whose IJG table is nearest); None for any other file."""
    from PIL import Image, JpegImagePlugin

    try:
        with Image.open(path) as im:
            if im.format != "JPEG" or not getattr(im, "quantization", None):
                return None
            table = np.array(im.quantization[0], dtype=np.float64)
            sampling = JpegImagePlugin.get_sampling(im)
    except Exception:
        return None
    if table.size != 64:
        return None
    errors = [float(np.abs(_ijg_table(q) - table).sum()) for q in range(1, 101)]
    return int(np.argmin(errors)) + 1, max(int(sampling), 0)


# ---------------------------------------------------------------------------------------------
# estimation


@dataclass
class _Blocks:
    mean: np.ndarray  # B x C block means
    var: np.ndarray  # B x C plane-fit residual variances
    lag1: np.ndarray  # B x C lag-1 autocovariance of the residual (horizontal and vertical averaged)
    residual: np.ndarray  # B x C x BLOCK**2 residuals
    clipped: np.ndarray  # B, too many samples at 0 or 1 (within half the file's quantum) to be read


def _plane_basis() -> np.ndarray:
    yy, xx = np.mgrid[0:BLOCK, 0:BLOCK].astype(np.float64)
    basis = np.stack([np.ones(BLOCK * BLOCK), xx.ravel() - 3.5, yy.ravel() - 3.5], axis=1)
    q, _ = np.linalg.qr(basis)
    return q  # BLOCK**2 x 3, orthonormal


def _to_blocks(img: np.ndarray) -> np.ndarray:
    """The BLOCK x BLOCK blocks of an H x W x C image, as (blocks) x C x BLOCK**2 float64; blocks lie
    on the JPEG grid (each holds whole 8 x 8 JPEG blocks) and a partial last row/column is dropped."""
    h, w, c = img.shape
    hb, wb = h // BLOCK, w // BLOCK
    b = img[: hb * BLOCK, : wb * BLOCK].astype(np.float64)
    return b.reshape(hb, BLOCK, wb, BLOCK, c).transpose(0, 2, 4, 1, 3).reshape(hb * wb, c, BLOCK * BLOCK)


def _blocks(img: np.ndarray, step: float = 1 / 255, clip_share: float = 0.0) -> _Blocks:
    """BLOCK x BLOCK blocks of an H x W x C image in [0, 1]: plane-fit residual statistics per channel.
    A block is clipped if more than ``clip_share`` of its samples lie within half a ``step`` (the
    file's quantum) of 0 or 1 (0: any one)."""
    b = _to_blocks(img)
    q = _plane_basis()
    residual = b - (b @ q) @ q.T
    var = (residual**2).sum(-1) / (BLOCK * BLOCK - 3)
    r = residual.reshape(-1, b.shape[1], BLOCK, BLOCK)
    lag1 = 0.5 * ((r[..., :, 1:] * r[..., :, :-1]).mean((-1, -2)) + (r[..., 1:, :] * r[..., :-1, :]).mean((-1, -2)))
    # half a quantum, not half an 8-bit level: a 16-bit camera's black level of ~100 counts (0.0015)
    # is not clipping, though 8 bits would round it to 0
    lo, hi = 0.5 * step, 1.0 - 0.5 * step
    clipped = ((b <= lo) | (b >= hi)).mean(axis=(1, 2)) > clip_share
    return _Blocks(b.mean(-1), var, lag1, residual, clipped)


def _select(blocks: _Blocks, edges: np.ndarray) -> np.ndarray:
    """Indices of the 'flat' blocks: in each intensity bin (of the channel mean; ``edges`` from
    ``_bin_edges``), those at or below the PERCENTILE of the channel-summed variance."""
    ok = ~blocks.clipped
    mean = blocks.mean.mean(1)
    total = blocks.var.sum(1)
    chosen: list[np.ndarray] = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        idx = np.nonzero(ok & (mean >= lo) & (mean < hi))[0]
        if idx.size < MIN_BLOCKS:
            continue
        cut = np.percentile(total[idx], PERCENTILE)
        chosen.append(idx[total[idx] <= cut])
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def _bin_edges(blocks: _Blocks) -> np.ndarray:
    """The intensity bins' edges: BINS bins over [0, 1], or over the image's own range when it fills
    less than DIM_TOP of it (its unclipped blocks' means up to their 99.5th percentile)."""
    means = blocks.mean.mean(1)[~blocks.clipped]
    top = float(np.percentile(means, 99.5)) if means.size else 1.0
    return np.linspace(0.0, 1.0 if top >= DIM_TOP else top, BINS + 1)


def _correlation(blocks: _Blocks, idx: np.ndarray) -> float:
    """Lag-1 correlation of the residuals of the selected blocks (pooled over channels)."""
    return float(blocks.lag1[idx].sum() / max(blocks.var[idx].sum() * (BLOCK * BLOCK - 3) / (BLOCK * BLOCK), 1e-20))


@functools.lru_cache(maxsize=1)
def _calibration() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each blur in BLUR_GRID, on pure unit-variance noise of that blur: the lag-1 residual
    correlation the estimator sees and the ratio (bin percentile of block variance) / true variance."""
    rng = torch.Generator().manual_seed(1234)
    rhos, ratios = [], []
    size = 384
    for blur in BLUR_GRID:
        white = torch.randn(1, 1, size, size, generator=rng, dtype=torch.float64)
        if blur > 0:
            radius = max(1, int(math.ceil(3 * blur)))
            k = gaussian_kernels(torch.tensor([blur], dtype=torch.float64), radius)
            white = F.conv2d(F.pad(white, (radius,) * 4, mode="reflect"), k)
        noise = white[0, 0].numpy()[:, :, None]
        blocks = _blocks(noise * 0.05 + 0.5)  # flat mid-gray, std 0.05: nothing clipped
        v = blocks.var[:, 0]
        ratios.append(float(np.percentile(v, PERCENTILE) / 0.05**2))
        idx = np.nonzero(v <= np.percentile(v, PERCENTILE))[0]
        rhos.append(_correlation(blocks, idx))
    return np.array(BLUR_GRID), np.array(rhos), np.array(ratios)


@functools.lru_cache(maxsize=1)
def _corr_calibration() -> tuple[np.ndarray, np.ndarray]:
    """For each channel correlation in CORR_GRID (all three pairs equal), the correlation the
    estimator sees among the blocks it selects."""
    rng = torch.Generator().manual_seed(4321)
    seen = []
    for rho in CORR_GRID:
        corr = torch.full((3, 3), rho, dtype=torch.float64).fill_diagonal_(1.0)
        white = torch.randn(3, 256 * 256, generator=rng, dtype=torch.float64)
        noise = (torch.linalg.cholesky(corr) @ white).reshape(3, 256, 256).permute(1, 2, 0).numpy()
        blocks = _blocks(noise * 0.05 + 0.5)
        idx = _select(blocks, _bin_edges(blocks))
        flat = blocks.residual[idx].transpose(1, 0, 2).reshape(3, -1)
        c = np.corrcoef(flat)
        seen.append(float((c[0, 1] + c[0, 2] + c[1, 2]) / 3))
    return np.array(CORR_GRID), np.array(seen)


def _blur_from_rho(rho: float) -> float:
    grid, rhos, _ = _calibration()
    order = np.argsort(rhos)
    return float(np.clip(np.interp(rho, rhos[order], grid[order]), grid[0], grid[-1]))


def _ratio_at(blur: float) -> float:
    grid, _, ratios = _calibration()
    return float(np.interp(blur, grid, ratios))


def _column_offsets(img: np.ndarray, heavy: bool = False, step: float = 1 / 255) -> tuple[np.ndarray, float]:
    """Each column's offset from its neighbours in an H x W x C image, and the offsets' std with the
    white noise's share taken out (0-1 scale).

    A pixel less the mean of its BAND_REACH neighbours on each side of its row keeps its column's
    offset (less the neighbours' mean of theirs: variance x (1 + 1 / (2 BAND_REACH))) and the white
    noise; the median down the column keeps the offset and a little of the noise (variance pi/2 x
    the pixel's / H), and textures, which change along a column, mostly cancel.

    ``heavy`` (heavy noise: CLIP_SHARES above 0): each column's offset is instead the mean, over
    its 2 BAND_REACH neighbours, of the median down the column of the pixel less that one
    neighbour. Clipping makes heavy noise skewed, and the median of a skewed pixel less its
    neighbours' mean is not 0 but the skew's, which changes with intensity: down a picture of dark
    ground under a bright sky every row's offset differs, read as banding (46 of 171 fits at std
    75; README, Round HEAVY-BAND). A pixel less one neighbour of the same intensity is symmetric
    whatever the skew. Its chance spread is PAIRWISE_SPREAD times the plain offsets', and the
    white share the test compares with is scaled to match. ``step``: the file's quantum, as for
    ``_blocks``' clipping."""
    gray = img.mean(axis=2, dtype=np.float64)
    h, w = gray.shape
    k = BAND_REACH
    if h < 4 * k or w < 4 * k:
        return np.zeros(w), 0.0
    padded = np.pad(gray, ((0, 0), (k, k)), mode="reflect")
    window = sum(padded[:, k + d : k + d + w] for d in range(-k, k + 1) if d)
    diff = gray - window / (2 * k)
    if heavy:
        offsets = _pairwise_offsets(img, gray, padded, step)
    else:
        offsets = np.median(diff, axis=0)
    spread = 1.4826 * np.median(np.abs(offsets - np.median(offsets)))
    rest = diff - offsets
    pixel = 1.4826 * np.median(np.abs(rest))
    # correlated noise (and texture) holds fewer independent samples per column than h: count
    # them from the rest's correlation down the column (lags 1 to BAND_REACH)
    power = float((rest**2).mean()) + 1e-20
    rho = [float((rest[d:] * rest[:-d]).mean()) / power for d in range(1, k + 1)]
    samples = h / max(1.0, 1 + 2 * sum(max(r, 0.0) for r in rho))
    white = math.pi / 2 * pixel**2 / samples
    if heavy:  # a mean of medians that share their pixel
        white *= PAIRWISE_SPREAD
    excess = spread**2 - white
    # the squared MAD of w medians misses the white part by about white * sqrt(5.4 / w) (one
    # standard error): an excess under BAND_Z of them is chance (small noisy images), not banding
    if excess < BAND_Z * white * math.sqrt(5.4 / w):
        return offsets - np.median(offsets), 0.0
    return offsets - np.median(offsets), math.sqrt(excess / (1 + 1 / (2 * k)))


def _pairwise_offsets(img: np.ndarray, gray: np.ndarray, padded: np.ndarray, step: float) -> np.ndarray:
    """Each column's offset from its BAND_REACH neighbours on each side (``padded``: ``gray`` padded
    by them): the mean over them of the median, down the column, of the pixel less that neighbour,
    both unclipped (no channel within half a ``step`` of 0 or 1; ``_column_offsets``)."""
    k, w = BAND_REACH, gray.shape[1]
    ok = np.all((img > 0.5 * step) & (img < 1 - 0.5 * step), axis=2)
    padded_ok = np.pad(ok, ((0, 0), (k, k)), mode="reflect")
    medians = []
    for d in range(-k, k + 1):
        if d:
            both = ok & padded_ok[:, k + d : k + d + w]
            pair = np.where(both, gray - padded[:, k + d : k + d + w], np.nan)
            with warnings.catch_warnings():  # a column of clipped pairs only: no offset read
                warnings.simplefilter("ignore", RuntimeWarning)
                medians.append(np.nan_to_num(np.nanmedian(pair, axis=0)))
    return np.mean(medians, axis=0)


def debanded(img: np.ndarray, heavy: bool = False, step: float = 1 / 255) -> tuple[np.ndarray, float, float]:
    """An H x W x C image in [0, 1] with its column and row banding taken out, and the column and
    row offsets' std (0 where under BAND_MIN, and then nothing is taken out); ``heavy`` and
    ``step``: see ``_column_offsets``."""
    stds = []
    for axis in (1, 0):  # columns, then rows (on the transpose)
        view = img if axis == 1 else img.transpose(1, 0, 2)
        offsets, std = _column_offsets(view, heavy, step)
        if std < BAND_MIN:
            stds.append(0.0)
            continue
        view = view - offsets[None, :, None]
        img = view if axis == 1 else view.transpose(1, 0, 2)
        stds.append(std)
    return img, stds[0], stds[1]


def fit_image_noise(img: np.ndarray) -> ImageNoise | None:
    """Fit the noise of one H x W x 3 image in [0, 1] (heavy noise from blocks with a few clipped
    samples, as a folder's: CLIP_SHARES); None when it has too few flat blocks."""
    for clip_share in CLIP_SHARES:
        fit = fit_images([img], clip_share=clip_share)[0][0]
        if fit is not None:
            return fit
    return None


def fit_images(
    images: Sequence[np.ndarray], banding: bool = True, clip_share: float = 0.0
) -> tuple[list[ImageNoise | None], set[int]]:
    """A fit per image (H x W x C in [0, 1]), and the indices of those that came from pooling.
    ``banding=False`` reads no banding (the fit as it was before banding was modelled);
    ``clip_share``: see ``_blocks`` and CLIP_SHARES.

    An image too small to fit alone (a 180 x 180 crop holds 121 blocks over 16 intensity bins; a bin
    needs MIN_BLOCKS) is pooled with the next such images of its channel count until the group
    holds POOL_BLOCKS blocks, and each gets the group's fit. That assumes the images of a folder
    share their noise (one camera, one setting), which is what a noisy folder usually is; a folder
    of mixed settings gets each group's average. Images that no group can fit stay None.
    """
    fits: list[ImageNoise | None] = []
    pending: dict[int, list[tuple[int, _Blocks]]] = {}
    pooled: set[int] = set()
    bands: list[tuple[float, float]] = []  # each image's own column and row banding

    def fit_group(group: list[tuple[int, _Blocks]]) -> None:
        fit = _fit_blocks(_concat_blocks([b for _, b in group]))
        if fit is None:
            return
        for k, _ in group:
            fits[k] = fit
            pooled.add(k)

    for k, img in enumerate(images):
        img = img[:, :, None] if img.ndim == 2 else img
        step = _quantum(img)  # before debanding moves the pixels off the file's levels
        img, column_std, row_std = debanded(img, clip_share > 0, step) if banding else (img, 0.0, 0.0)
        bands.append((column_std, row_std))
        blocks = _blocks(img, step, clip_share)
        fits.append(_fit_blocks(blocks))
        if fits[k] is None and blocks.mean.shape[0] > 0:
            group = pending.setdefault(img.shape[2], [])
            group.append((k, blocks))
            if sum(b.mean.shape[0] for _, b in group) >= POOL_BLOCKS:
                fit_group(group)
                pending[img.shape[2]] = []
    for group in pending.values():
        if len(group) > 1:  # a lone image was already tried alone
            fit_group(group)
    fits = [
        f if f is None or not any(band) else dataclasses.replace(f, column_std=band[0], row_std=band[1])
        for f, band in zip(fits, bands, strict=True)
    ]
    return fits, pooled


def _quantum(img: np.ndarray) -> float:
    """The level step of the file an image in [0, 1] came from: 1/255 if every pixel is an 8-bit
    level, else 1/65535 (16-bit files, and images that were never saved)."""
    levels = img * 255.0
    return 1 / 255 if bool(np.all(np.abs(levels - np.round(levels)) < 1e-3)) else 1 / 65535


def _concat_blocks(parts: Sequence[_Blocks]) -> _Blocks:
    return _Blocks(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(_Blocks)))


def _fit_blocks(blocks: _Blocks) -> ImageNoise | None:
    """The fit of ``fit_image_noise`` from one image's (or a pooled group's) blocks."""
    c = blocks.mean.shape[1]
    edges = _bin_edges(blocks)  # the same bins for the selection, the line and the skew test
    idx = _select(blocks, edges)
    if idx.size < MIN_BLOCKS:
        return None
    blur = _blur_from_rho(_correlation(blocks, idx))
    ratio = _ratio_at(blur)
    gains, floors = [], []
    ok = ~blocks.clipped
    for ch in range(c):
        xs, ys, ws = [], [], []
        mean, var = blocks.mean[:, ch], blocks.var[:, ch]
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            sel = np.nonzero(ok & (mean >= lo) & (mean < hi))[0]
            if sel.size < MIN_BLOCKS:
                continue
            cut = np.percentile(var[sel], PERCENTILE)
            # the intensity of the blocks at the percentile, not of the whole bin: with signal-
            # dependent noise the darker blocks of a bin are the quieter ones
            near = sel[np.argsort(np.abs(var[sel] - cut))[: max(3, sel.size // 10)]]
            xs.append(float(mean[near].mean()))
            ys.append(float(cut / ratio))
            # a percentile of n variances has a relative error ~ 1/sqrt(n): weigh by precision
            ws.append(math.sqrt(sel.size) / max(ys[-1], 1e-12))
        gain, floor = _robust_line(np.array(xs), np.array(ys), np.array(ws))
        gains.append(gain)
        floors.append(floor)
    gray = c == 1 or _gray(blocks)
    # a gray fit counts photons without the skew test: on both gray Gaussian folders measured, counted
    # draws scored above Gaussian ones (README, Round WHITE), so a wrong call there cost nothing, and a
    # missed one costs (Round GATE). Colour fits keep the test: the shot draw has no channel correlation
    photons = (
        blur <= SHOT_MAX_BLUR
        and min(gains) > 0.0
        and (gray or _shot_ratio(blocks, idx, gains, edges) >= SHOT_RATIO)
    )
    if c == 1:
        gains, floors = gains * 3, floors * 3
    if gray:
        # a gray image's noise is gray: drawn in colour, it would teach the restorer a chroma noise
        # that gray inputs never have (and that a discriminator sees at once)
        corr = np.array(GRAY_CORR)
    else:
        res = blocks.residual[idx]  # n x 3 x 64
        flat = res.transpose(1, 0, 2).reshape(3, -1)
        grid, seen = _corr_calibration()
        corr = np.nan_to_num(np.corrcoef(flat), nan=0.0)
        corr = np.sign(corr) * np.interp(np.abs(corr), seen, grid)
        np.fill_diagonal(corr, 1.0)
    return ImageNoise(
        gain=tuple(gains),  # type: ignore[arg-type]
        floor=tuple(floors),  # type: ignore[arg-type]
        blur=blur,
        channel_corr=tuple(tuple(float(v) for v in row) for row in corr),
        photons=bool(photons),
    )


@functools.lru_cache(maxsize=1)
def _third_moment_share() -> float:
    """E[r^3] of a block's plane-fit residual per unit third cumulant of white noise: the residual
    is the noise times a projection P, so E[r_i^3] = sum_j P_ij^3 kappa_3."""
    q = _plane_basis()
    p = np.eye(BLOCK * BLOCK) - q @ q.T
    return float((p**3).sum() / (BLOCK * BLOCK))


def _shot_ratio(blocks: _Blocks, idx: np.ndarray, gains: Sequence[float], edges: np.ndarray) -> float:
    """How much of the fitted signal-dependent noise is shot noise, by its skew: photons counted at
    gain g give a third cumulant g^2 * I, Gaussian noise none. The photon gain implied by the
    selected blocks' residual third moments (least squares of m3 = g_p^2 * I over intensity bins),
    over the fitted gain; the mean over channels (each > 0: ``_fit_blocks`` tests no other)."""
    ratios = []
    chosen = np.zeros(blocks.mean.shape[0], dtype=bool)
    chosen[idx] = True
    share = _third_moment_share()
    for ch, gain in enumerate(gains):
        mean = blocks.mean[:, ch]
        xs, m3s, ws = [], [], []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            sel = np.nonzero(chosen & (mean >= lo) & (mean < hi))[0]
            if sel.size < 8:
                continue
            xs.append(float(mean[sel].mean()))
            m3s.append(float((blocks.residual[sel, ch] ** 3).mean()) / share)
            ws.append(float(sel.size))
        if not xs:
            return 0.0
        x, m3, w = np.array(xs), np.array(m3s), np.array(ws)
        g2 = float((w * x * m3).sum() / max((w * x * x).sum(), 1e-20))
        ratios.append(math.copysign(math.sqrt(abs(g2)), g2) / gain)
    return float(np.mean(ratios))


def _gray(blocks: _Blocks) -> bool:
    """Whether three channels hold one gray image (a gray file is read as three equal channels)."""
    res = blocks.residual
    return bool(np.array_equal(res[:, 0], res[:, 1]) and np.array_equal(res[:, 0], res[:, 2]))


def _robust_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """``_fit_line`` after dropping, one at a time, bins far above the line: a bin of mostly
    textured blocks only ever reads high."""
    keep = np.ones(x.size, dtype=bool)
    gain, floor = _fit_line(x, y, w)
    while keep.sum() > 3:
        excess = np.where(keep, y / np.maximum(gain * x + floor, 1e-12), 0.0)
        worst = int(np.argmax(excess))
        if excess[worst] < 1.15:
            break
        keep[worst] = False
        gain, floor = _fit_line(x[keep], y[keep], w[keep])
    return gain, floor


def _fit_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares y = gain * x + floor with gain, floor >= 0."""
    if x.size == 0:
        return 0.0, 0.0
    if x.size == 1:
        return 0.0, max(float(y[0]), 0.0)
    a = np.stack([x, np.ones_like(x)], axis=1) * w[:, None]
    gain, floor = np.linalg.lstsq(a, y * w, rcond=None)[0]
    if gain < 0:
        return 0.0, max(float(np.average(y, weights=w)), 0.0)
    if floor < 0:
        return max(float((x * y * w * w).sum() / (x * x * w * w).sum()), 0.0), 0.0
    return float(gain), float(floor)


def fit_each(
    images: Sequence[np.ndarray],
    paths: Sequence[str | Path] | None = None,
    match: bool = False,
    banding: bool = True,
    clip_share: float = 0.0,
) -> tuple[list[ImageNoise | None], set[int], list[float]]:
    """Each image's fit as ``fit_noise_model`` makes it (None: not enough flat blocks), the indices
    fitted by pooling, and the level factors ``match`` applied."""
    fits: list[ImageNoise | None] = []
    factors = []
    per_image, pooled = fit_images(images, banding=banding, clip_share=clip_share)
    for k, (img, fit) in enumerate(zip(images, per_image, strict=True)):
        if fit is not None:
            jpeg = jpeg_settings(paths[k]) if paths is not None else None
            if jpeg is not None:
                # JPEG rounds away the skew that counted photons are read by: such a fit neither
                # votes for them (fit_noise_model) nor draws them, here in match_fit's synthesis too
                fit = dataclasses.replace(fit, jpeg_quality=jpeg[0], jpeg_subsampling=jpeg[1], photons=False)
            if match and fit.jpeg_quality and k not in pooled:
                fit, factor = match_fit(fit, img, seed=k)
                factors.append(factor)
        fits.append(fit)
    return fits, pooled, factors


def is_white(fit: ImageNoise) -> bool:
    """Whether a fit is white noise: blur at most SHOT_MAX_BLUR (the photon test's cut), not a JPEG."""
    return fit.blur <= SHOT_MAX_BLUR and not fit.jpeg_quality


def is_gray(fit: ImageNoise) -> bool:
    """Whether a fit is a gray file's: one noise in all channels (GRAY_CORR; ``sample_fitted``
    draws such a fit gray by the same test)."""
    return all(v == 1.0 for row in fit.channel_corr for v in row)


def white_folder(fits: Sequence[ImageNoise]) -> bool:
    """Whether a folder's fits are white noise: most of them ``is_white``."""
    return 2 * sum(is_white(f) for f in fits) > len(fits)


def auto_level_range(fits: Sequence[ImageNoise]) -> tuple[float, float]:
    """The level spread for a folder's fits: WHITE_LEVEL_RANGE for a ``white_folder``, else
    BLURRED_LEVEL_RANGE."""
    return WHITE_LEVEL_RANGE if white_folder(fits) else BLURRED_LEVEL_RANGE


def fit_noise_model(
    images: Sequence[np.ndarray],
    source: str = "",
    paths: Sequence[str | Path] | None = None,
    match: bool = False,
) -> NoiseModel:
    """A NoiseModel from noisy images (H x W x 3 in [0, 1]); images without enough flat blocks are
    skipped. With ``paths`` (the images' files), a JPEG file's quality and subsampling go into its
    fit; with ``match``, each fit's level is corrected by synthesis (``match_fit``; not for fits
    pooled over small images, whose read-back would fail alone). Heavy noise clips a sample in nearly
    every block: the strictest of CLIP_SHARES at which some image fits is the folder's. ValueError
    when none could be fitted."""
    for clip_share in CLIP_SHARES:
        each, pooled, factors = fit_each(images, paths, match, clip_share=clip_share)
        fits = [f for f in each if f is not None]
        if fits:
            break
    else:
        raise ValueError("no image has enough flat areas to measure its noise")
    # a noisy folder is one sensor: it counts photons if most of its fits read so, and then all its
    # fits draw them. One fit's skew test can err either way (shot_test.py: with Poisson noise 22 of
    # 24 tests vote photons; on CBSD68 with Gaussian noise 2 of 2). JPEG fits stay Gaussian (fit_each)
    counted = 2 * sum(f.photons for f in fits) > len(fits)
    fits = [dataclasses.replace(f, photons=counted and not f.jpeg_quality) for f in fits]
    if pooled:
        source += f" ({len(pooled)} too small to fit alone, fitted in pooled groups of {POOL_BLOCKS} blocks)"
    note = level_note(factors) if factors else ""
    return NoiseModel(fitted=tuple(fits), source=source, level_note=note, clip_share=clip_share)


def estimate_sigma(img: np.ndarray) -> float:
    """One noise std (0-1 scale) for a classical denoiser: the fitted model's std at the image's
    mean intensity, averaged over channels. An image with too few flat blocks for a fit of its own
    (a 256-px crop under heavy noise, whose blocks nearly all clip) gets the finest wavelet band's
    median instead (``level.image_level``, scikit-image's estimator): it reads texture as noise
    and clipped noise low, but a level of 0 would leave the image as it is."""
    fit = fit_image_noise(img)
    if fit is None:
        from invrep_cli.level import image_level

        return image_level(img)
    return float(np.mean(fit.std_at(float(img.mean()))))


# ---------------------------------------------------------------------------------------------
# correcting the fitted levels by synthesis

#: std factors first tried by ``match_fit`` (geometric): JPEG only ever lowers the reading
MATCH_GRID = tuple(float(v) for v in np.geomspace(0.8, 3.2, 8))


def _planar(img: np.ndarray) -> np.ndarray:
    """A noiseless stand-in for a noisy image, on which the estimator reads exactly zero: each of
    its BLOCK x BLOCK blocks (per channel) replaced by its fitted plane. Same layout of intensities
    and of flat areas, no noise, no texture."""
    h, w, c = img.shape
    hb, wb = h // BLOCK, w // BLOCK
    q = _plane_basis()
    planes = (_to_blocks(img) @ q) @ q.T
    return planes.reshape(hb, wb, c, BLOCK, BLOCK).transpose(0, 3, 1, 4, 2).reshape(hb * BLOCK, wb * BLOCK, c)


def _read_back(fit: ImageNoise, base: torch.Tensor, seed: int) -> ImageNoise | None:
    """The estimator's fit of ``fit``'s noise drawn onto ``base`` and saved as ``fit``'s file was."""
    noisy = NoiseModel(fitted=(fit,), jpeg_fraction=1.0).sample(base, torch.Generator().manual_seed(seed))
    return fit_image_noise(noisy[0].permute(1, 2, 0).numpy())


def _mean_corr(fit: ImageNoise) -> float:
    return float(np.mean([fit.channel_corr[i][j] for i, j in ((0, 1), (0, 2), (1, 2))]))


def _level(fit: ImageNoise) -> float:
    return float(np.mean(fit.std_at(0.5)))


def _solve(candidates: Sequence[ImageNoise], values: np.ndarray, target: float, read: Any, base: torch.Tensor,
           seed: int) -> float:  # fmt: skip
    """The parameter value (interpolated in ``values``, one per candidate, ordered so that the
    reading grows along them) whose read-back equals ``target``; the nearest end where the target is
    out of reach, the middle where nothing could be read back."""
    readings = []
    for cand in candidates:
        back = _read_back(cand, base, seed)
        readings.append(read(back) if back is not None else -np.inf)
    curve = np.maximum.accumulate(np.array(readings, dtype=np.float64))
    finite = np.isfinite(curve)
    if not finite.any():
        return float(values[len(values) // 2])
    return float(np.interp(target, curve[finite], values[finite]))


def match_fit(fit: ImageNoise, image: np.ndarray, seed: int = 0) -> tuple[ImageNoise, float]:
    """Correct a fit of a JPEG file by synthesis; returns the corrected fit and its std factor.

    The estimator is calibrated on pure noise, so it reads uncompressed noise right; JPEG it does
    not model: quantising each 8 x 8 block removes much of the noise of flat areas (the fit reads
    low), its high frequencies (the fit reads more blur) and its colour (chroma is subsampled and
    quantised harder: the fit reads more channel correlation). So the fit's noise is drawn onto the
    image made of its own blocks' planes (``_planar``: same layout of intensities and flat areas,
    no noise), saved as the file was saved, and read back with the same estimator; level, blur and
    level again are each set, over a grid, to the value whose read-back equals the image's own
    reading. Channel correlation is kept as read: after 4:2:0 JPEG it reads about 0.95 whatever it
    was before, so it cannot be matched. Only the noisy image takes part: no pairs. Fits of other
    files come back unchanged."""
    if not fit.jpeg_quality:
        return fit, 1.0
    base = torch.from_numpy(_planar(image[:, :, :3])).permute(2, 0, 1)[None].float()
    target_level, target_blur = _level(fit), fit.blur
    if target_level <= 0:
        return fit, 1.0

    def by_level(current: ImageNoise, factors: np.ndarray) -> ImageNoise:
        unit = current.scaled(target_level / max(_level(current), 1e-12))
        log_f = _solve([unit.scaled(float(f)) for f in factors], np.log(factors), target_level, _level, base, seed)
        return unit.scaled(math.exp(log_f))

    current = by_level(fit, np.array(MATCH_GRID))
    blurs = np.array([b for b in BLUR_GRID[::2] if b <= max(target_blur, 0.2) + 1e-9])
    blur = _solve(
        [dataclasses.replace(current, blur=float(b)) for b in blurs], blurs, target_blur, lambda f: f.blur, base, seed
    )
    current = dataclasses.replace(current, blur=blur)
    current = by_level(current, np.geomspace(0.7, 1.5, 6) * _level(current) / target_level)
    return current, _level(current) / target_level


def level_note(factors: Sequence[float]) -> str:
    f = np.array(factors)
    return f"JPEG fits corrected by synthesis x{np.median(f):.2f} (median; {f.min():.2f}-{f.max():.2f})"
