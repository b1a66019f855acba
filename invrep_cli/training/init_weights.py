"""Where E_X and G_Y start: ``--init-weights auto|none|PATH``.

``auto`` takes a bundled model (the registry's bundled entries, ``invrep weights list``) when the
run's networks have the bundled models' shape, and among them the one whose own recorded noise
(``noise_model`` in its metadata) is nearest the noise of the run's noisy domain. Noise is compared
by the three things that tell camera noise from white noise: spatial blur (px), mean correlation
across channels, and whether the files were JPEGs. A spec (``--synthetic gaussian:...``) is white
noise: blur 0, correlation 0, no JPEG. Distance: |blur difference| / 0.8 + |correlation
difference| + (1 if one is JPEG and the other not); a tie, or any doubt (no noise model, a model
whose metadata does not say its noise), goes to the registry's default.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from invrep_cli.config import INIT_AUTO, INIT_NONE, ModelConfig
from invrep_cli.noise import NoiseModel


@dataclass(frozen=True)
class NoiseTraits:
    """What tells camera noise from white noise: blur (px), channel correlation, JPEG or not."""

    blur: float
    correlation: float
    jpeg: bool

    def distance(self, other: NoiseTraits) -> float:
        return (
            abs(self.blur - other.blur) / 0.8
            + abs(self.correlation - other.correlation)
            + float(self.jpeg != other.jpeg)
        )


WHITE = NoiseTraits(0.0, 0.0, False)


def traits_of_model(model: NoiseModel) -> NoiseTraits:
    """The noise the run trains on ("own": the spec or the fits, not the --noise-mix around it)."""
    if model.spec is not None:
        return WHITE
    return NoiseTraits(
        float(np.median([f.blur for f in model.fitted])),
        float(np.mean([_mean_correlation(f.channel_corr) for f in model.fitted])),
        any(f.jpeg_quality for f in model.fitted),
    )


def traits_of_description(text: str) -> NoiseTraits | None:
    """A bundled model's noise from the ``NoiseModel.describe()`` line its metadata records."""
    own = text.split("own = ", 1)[-1]
    if "--synthetic spec" in own:
        return WHITE
    blur = re.search(r"spatial blur ([0-9.]+) px", own)
    corr = re.search(r"channel correlation (-?[0-9.]+)", own)
    if not blur or not corr:
        return None
    return NoiseTraits(float(blur.group(1)), float(corr.group(1)), "JPEG quality" in own)


def _bundled_candidates() -> list[tuple[str, str, ModelConfig, NoiseTraits | None]]:
    """(name, path, model config, recorded noise) of every bundled registry model present here."""
    from safetensors import safe_open

    from invrep_cli.weights import list_weights

    out = []
    for row in list_weights():
        if not (row["bundled"] and row["cached"] and row["path"].endswith(".safetensors")):
            continue
        with safe_open(row["path"], framework="pt") as f:
            meta: dict[str, Any] = f.metadata() or {}
        try:
            config = ModelConfig.from_dict(json.loads(meta["model_config"]))
        except (KeyError, ValueError, TypeError):
            continue
        out.append((row["name"], row["path"], config, traits_of_description(meta.get("noise_model", ""))))
    out.sort(key=lambda c: 0 if _is_default(c[0]) else 1)  # the default first: it wins ties
    return out


def _is_default(name: str) -> bool:
    from invrep_cli.weights import DEFAULT_WEIGHTS

    return name == DEFAULT_WEIGHTS


def choose_init_weights(spec: str, model: ModelConfig, noise: NoiseModel | None) -> tuple[str | None, str]:
    """(restorer file to start from or None for random weights, the reason in words)."""
    if spec == INIT_NONE:
        return None, "random weights (--init-weights none)"
    if spec != INIT_AUTO:
        return spec, f"--init-weights {spec}"
    # a conditioned run (--level-input) starts from a blind model of its shape (the level's weights at zero)
    blind = dataclasses.replace(model.restorer_shape(), level_input=False)
    candidates = [c for c in _bundled_candidates() if c[2].restorer_shape() == blind]
    if not candidates:
        return None, f"random weights: no bundled model has the {model.name!r} networks asked for"
    if noise is None:
        name, path, _, _ = candidates[0]
        return path, f"bundled {name} (the default: the run has no noise model to compare with)"
    own = traits_of_model(noise)
    scored = [(c[3].distance(own), i, c) for i, c in enumerate(candidates) if c[3] is not None]
    if not scored:
        name, path, _, _ = candidates[0]
        return path, f"bundled {name} (the default: no bundled model records its noise)"
    distance, _, (name, path, _, traits) = min(scored, key=lambda s: (round(s[0], 6), s[1]))
    return path, (
        f"bundled {name}: its noise (blur {traits.blur:.2f} px, channel correlation {traits.correlation:.2f}"
        f"{', JPEG' if traits.jpeg else ''}) is the nearest to the run's (blur {own.blur:.2f} px, "
        f"correlation {own.correlation:.2f}{', JPEG' if own.jpeg else ''})"
    )


def _mean_correlation(corr: tuple[tuple[float, ...], ...]) -> float:
    """Mean of the three off-diagonal channel correlations (as ``noise.summarize`` reports it)."""
    return float(np.mean([corr[0][1], corr[0][2], corr[1][2]]))
