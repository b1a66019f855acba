"""The two training stages as objectives: functions from networks and a batch to named loss terms.

- ``warm_start_objective`` (stage 1): the restorer G_Y(E_X(.)) against clean crops under noise drawn
  from a noise model of the noisy domain. No pairs: LIR's cross-cycle path G_Y(E_X(x_ba)) ~ y with the
  noise model standing in for G_X.
- ``lir_generator_objective`` (stage 2): every LIR loss of the encoders and decoders (LIR.md);
  the discriminators' own steps stay in the trainer, which owns their optimisers.

Both return ``(terms, images)``: the unweighted loss terms by name (the trainer weighs and sums
them with ``losses.weighted_total``) and detached images for the sample sheets. They run under
whatever autocast the caller opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from invrep_cli.level import noise_level, with_level
from invrep_cli.losses import background_consistency, l1, latent_penalty, lsgan, semantic_consistency
from invrep_cli.models import LIRNetworks
from invrep_cli.noise import NoiseModel

Terms = dict[str, torch.Tensor]
Images = dict[str, torch.Tensor]


def with_latent_noise(code: torch.Tensor) -> torch.Tensor:
    """LIR's regulariser: unit Gaussian noise on a latent before it is decoded (training only)."""
    return code + torch.randn_like(code)


@dataclass
class TrainingForward:
    """The modules a training forward goes through (DDP or compiled wrappers where used), by the
    names of ``LIRNetworks``."""

    modules: dict[str, nn.Module]
    #: E_X reads the noise level of each image beside it (``ModelConfig.level_input``)
    level_input: bool = False

    def encode(self, name: str, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(content code, skip features) of a content encoder; no features for the authors' shape.
        A conditioned E_X is given each image's estimated level, as ``Restorer`` gives it."""
        if name == "noisy_encoder" and self.level_input:
            image = with_level(image, noise_level((image.detach().float() + 1.0) * 0.5))
        return self.modules[name](image, with_skips=True)

    def decode_clean(self, code: torch.Tensor, features: list[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """G_Y of a content code, fed the skip features and the image of the same encoding (the
        authors' decoder ignores both)."""
        return self.modules["clean_decoder"](code, features, image)


def warm_start_objective(
    forward: TrainingForward,
    noise_model: NoiseModel,
    clean: torch.Tensor,
    gray_fraction: float = 0.0,
    taught: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[Terms, Images]:
    """Stage 1: L1 between G_Y(E_X(n(y))) and y for clean crops y in [-1, 1]. No latent noise: this
    path is the restorer exactly as it runs at inference.

    A ``gray_fraction`` of the crops is made gray as restore feeds a gray image: one channel (the
    channel mean) with its noise, replicated to three, so the restorer learns noise it cannot tell
    from the channels' differences.

    ``taught``: (real noisy crops, a teacher restorer's outputs on them), both in [-1, 1], restored
    in the same batch and counted in the same L1, one term per crop as the synthetic ones."""
    clean01 = (clean.float() + 1.0) * 0.5
    synthetic = noise_model.sample(clean01)
    gray = torch.rand(clean.shape[0], device=clean.device) < gray_fraction
    if gray_fraction > 0 and bool(gray.any()):
        luma = clean01[gray].mean(1, keepdim=True)
        clean01 = clean01.clone()
        clean01[gray] = luma.expand(-1, 3, -1, -1)
        synthetic[gray] = noise_model.sample(luma).expand(-1, 3, -1, -1)
    target = clean01 * 2.0 - 1.0
    synthetic = synthetic * 2.0 - 1.0
    if taught is not None:
        synthetic = torch.cat([synthetic, taught[0].to(synthetic.dtype)])
        target = torch.cat([target, taught[1].to(target.dtype)])
    restored = forward.decode_clean(*forward.encode("noisy_encoder", synthetic), synthetic)
    terms = {"warmup_l1": l1(restored.float(), target)}
    images = {"x": synthetic.detach(), "x_ab": restored.detach(), "y": target.detach(), "x_ba": synthetic.detach()}
    return terms, images


@dataclass
class NoiseModelGX:
    """G_X begun as the fitted noise model: x_ba = y + n_fit(y) + r, with r = g x G_X(codes)
    (``residual`` "image"), g x (G_X(codes) - y) ("difference") or g x (G_X(codes) - G_X(codes with
    the noise code zeroed)) ("noise-code"); g = ``gate_scale`` x the gate, a learned scalar starting
    at zero, so at stage 2's first step G_X *is* stage 1's noise and D_X teaches it only what the fit
    got wrong. The noise is the run's own model (its spec or fits, not the --noise-mix around them),
    clipped and quantised as a noisy file is; y's path carries no gradient (the noise is data), the
    residual's does.

    Why "difference": G_X is also the decoder of the noisy reconstructions, so its output is a whole
    image; g x that image adds g x the scene to x_ba, which D_X can only answer by closing the gate.
    Why "noise-code": a G_X that has not learnt to redraw y (Round LONG: 17-20/255 from it on
    average) puts that error into the difference; what the noise code changes in G_X's output is
    the noise G_X draws, and its error on the scene cancels (to first order).
    Why a scale: Adam moves the gate by about the learning rate a step whatever its gradient, and
    G_X's own adversarial gradient is scaled by the gate, so at scale 1 the residual can hardly grow."""

    noise_model: NoiseModel
    gate: torch.Tensor
    residual: str = "image"
    gate_scale: float = 1.0

    def __call__(
        self, clean: torch.Tensor, decoded: torch.Tensor, without_noise_code: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x_ba from clean y, G_X's output and (for "noise-code") G_X's output with the noise code zeroed."""
        noisy01 = self.noise_model.sample((clean.detach().float() + 1.0) * 0.5)
        g = (self.gate * self.gate_scale).to(decoded.dtype)
        if self.residual == "noise-code":
            if without_noise_code is None:
                raise ValueError("the noise-code residual needs G_X's output with the noise code zeroed")
            added = decoded - without_noise_code
        elif self.residual == "difference":
            added = decoded - clean.detach().to(decoded.dtype)
        else:
            added = decoded
        return (noisy01 * 2.0 - 1.0).to(decoded.dtype) + g * added


def synthetic_noisy(
    noisy_decoder: nn.Module,
    code: torch.Tensor,
    noise_code: torch.Tensor,
    clean: torch.Tensor,
    fake_noisy: NoiseModelGX | None = None,
) -> torch.Tensor:
    """x_ba for clean ``clean`` of content ``code``: G_X(code (+) noise_code) (the authors'), or with
    ``fake_noisy`` the fitted noise plus G_X's gated residual. The one path of the generator and
    discriminator steps (and of the probe), so they all see the same x_ba."""
    decoded = noisy_decoder(torch.cat([code, noise_code], 1))
    if fake_noisy is None:
        return decoded
    without = None
    if fake_noisy.residual == "noise-code":
        without = noisy_decoder(torch.cat([code, torch.zeros_like(noise_code)], 1))
    return fake_noisy(clean, decoded, without)


def lir_generator_objective(
    forward: TrainingForward,
    nets: LIRNetworks,
    x: torch.Tensor,
    y: torch.Tensor,
    vgg: Any = None,
    fake_noisy: NoiseModelGX | None = None,
    restorer_latent_noise: bool = True,
) -> tuple[Terms, Images]:
    """Stage 2: the LIR terms of the encoders and decoders for noisy ``x`` and clean ``y`` (both in
    [-1, 1]). ``nets`` provides the (frozen) discriminators; ``vgg`` the semantic features or None;
    ``fake_noisy`` makes x_ba from y and G_X's output (None: G_X's output itself, the authors');
    ``restorer_latent_noise`` False: the codes G_Y decodes get no latent noise (as at inference)."""
    noise_encoder, noisy_decoder = forward.modules["noise_encoder"], forward.modules["noisy_decoder"]
    code_x, features_x = forward.encode("noisy_encoder", x)
    code_y, features_y = forward.encode("clean_encoder", y)
    noise_code_x = noise_encoder(x)
    # LIR adds unit Gaussian noise to every latent before it is decoded
    code_x_in, code_y_in, noise_code_x_in = map(with_latent_noise, (code_x, code_y, noise_code_x))
    # G_Y's codes: x_ab and y_rec take the noised codes drawn above (so the authors' path draws its
    # noise in the same order as before the option), the cross-cycle y draws its own below
    x_ab = forward.decode_clean(code_x_in if restorer_latent_noise else code_x, features_x, x)  # restored
    x_ba = synthetic_noisy(noisy_decoder, code_y_in, noise_code_x_in, y, fake_noisy)
    x_rec = noisy_decoder(torch.cat([code_x_in, noise_code_x_in], 1))
    y_rec = forward.decode_clean(code_y_in if restorer_latent_noise else code_y, features_y, y)
    code_ab, _ = forward.encode("clean_encoder", x_ab)
    code_ba, features_ba = forward.encode("noisy_encoder", x_ba)
    noise_code_ba = noise_encoder(x_ba)
    x_cyc = noisy_decoder(torch.cat([with_latent_noise(code_ab), with_latent_noise(noise_code_ba)], 1))
    y_cyc = forward.decode_clean(with_latent_noise(code_ba) if restorer_latent_noise else code_ba, features_ba, x_ba)

    batch = x.shape[0]
    repr_score = nets.representation_discriminator(torch.cat([code_x, code_y]))
    terms: Terms = {
        "adv_noisy": lsgan(nets.noisy_discriminator(x_ba), 1.0),
        "adv_clean": lsgan(nets.clean_discriminator(x_ab), 1.0),
        "repr_adv": lsgan(repr_score[:batch], 0.5) + lsgan(repr_score[batch:], 0.5),
        "rec_noisy": l1(x_rec, x),
        "rec_clean": l1(y_rec, y),
        "cycle_noisy": l1(x_cyc, x),
        "cycle_clean": l1(y_cyc, y),
        "latent": sum(latent_penalty(z) for z in (code_x, noise_code_x, code_y, code_ab, noise_code_ba, code_ba)),  # type: ignore[dict-item]
        "background": background_consistency(x_ab, x) + background_consistency(x_ba, y),
    }
    if vgg is not None:
        with torch.no_grad():  # targets: no backward through VGG for the real images
            f_x, f_y = vgg(torch.cat([x, y])).chunk(2)
        f_ab, f_ba = vgg(torch.cat([x_ab, x_ba])).chunk(2)
        terms["semantic"] = semantic_consistency(f_ab, f_x) + semantic_consistency(f_ba, f_y)
    images = {"x": x.detach(), "x_ab": x_ab.detach(), "y": y.detach(), "x_ba": x_ba.detach()}
    return terms, images
