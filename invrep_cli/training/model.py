"""The LIR model as training sees it: eight networks, their optimisers, schedulers and grad
scalers, and the moving average of the restorer, behind ``train_step(batch) -> losses`` and
``state_dict()`` (BasicSR's model/loop seam). No folders, logs or files: a step runs on a tensor
batch, so the GAN discipline is testable alone.

Stage 1 (the first ``warmup_steps`` steps): one step of E_X and G_Y on clean crops with noise
drawn from the noise model. Stage 2, one LIR iteration: ``repr_steps`` D_R steps on detached
codes, one D_X/D_Y step on detached fakes, one generator step with every LIR loss
(discriminators frozen with ``requires_grad_(False)``). The codes E_X(x), E_Y(y), E_X^N(x) for the
discriminator steps are computed once per iteration without gradients: the encoders do not change
during the D_R steps and, with batch statistics in train mode, recomputing them would give the
same values (only BatchNorm running averages would be updated more often).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from invrep_cli.config import ModelConfig, TrainConfig
from invrep_cli.distenv import DistInfo
from invrep_cli.ema import MovingAverage
from invrep_cli.errors import UsageError
from invrep_cli.losses import lsgan, weighted_total
from invrep_cli.models import LIRNetworks, Restorer, build_models
from invrep_cli.noise import NoiseModel
from invrep_cli.objectives import (
    NoiseModelGX,
    TrainingForward,
    lir_generator_objective,
    synthetic_noisy,
    warm_start_objective,
    with_latent_noise,
)

Losses = dict[str, torch.Tensor]
#: the restorer's two networks: what stage 1 trains, what ships, what stage 2's freeze holds still
RESTORER_NETWORKS = ("noisy_encoder", "clean_decoder")
#: E_X^N and G_X: the noise half of the generators, which --lir-gx-lr moves at a rate of its own
NOISE_GENERATOR_NETWORKS = ("noise_encoder", "noisy_decoder")


#: stage 1's learning rate ramps up linearly over this many steps
LR_RAMP_STEPS = 50
#: how many steps of averaging a trained start counts as (the moving average's warm-up begins there)
TRAINED_START_PRIOR_STEPS = 100


def warmup_lr_factor(step: int, total: int) -> float:
    """Stage 1's learning rate: a linear ramp over its first ``LR_RAMP_STEPS`` steps, times a cosine
    decay from 1 to 1 % of the peak over ``total`` steps (then flat). Adam's first steps move each
    parameter by about the full rate, which shakes a trained start: 2 steps at 1e-3 and batch 2 from
    the bundled model cost 6.4 dB of the no-reference score without the ramp, 0.2 dB with it (the
    moving average's prior steps on in both; ``benchmarks/two_step_start.py``)."""
    total = max(1, total)
    ramp = min(1.0, (step + 1) / LR_RAMP_STEPS)
    return ramp * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))


class LIRModel:
    """Networks, optimisers, schedulers, grad scalers and the moving average of E_X and G_Y.

    ``warmup_steps`` is the stage boundary; it may be set after construction and before the first
    step (a ``--time`` probe measures steps before the run knows how many it will take)."""

    def __init__(
        self,
        model_config: ModelConfig,
        cfg: TrainConfig,
        *,
        warmup_steps: int,
        noise_model: NoiseModel | None = None,
        device: torch.device | None = None,
        amp_dtype: torch.dtype | None = None,
        vgg: nn.Module | None = None,
        dist: DistInfo | None = None,
        init_state: dict[str, torch.Tensor] | None = None,
        teacher: Restorer | None = None,
    ) -> None:
        self.config = model_config
        self.cfg = cfg
        self.warmup_steps = warmup_steps
        self.noise_model = noise_model
        self.device = device or torch.device("cpu")
        self.amp_dtype = amp_dtype
        self.vgg = vgg
        self.dist = dist or DistInfo()
        # a term that cannot be computed weighs nothing, never something computed with random weights
        self.loss_weights = cfg.losses if vgg is not None else dataclasses.replace(cfg.losses, semantic=0.0)
        self.step = 0
        #: images of the last step for sample sheets: noisy x, restored x_ab, clean y, synthetic x_ba
        self.visuals: dict[str, torch.Tensor] = {}

        #: stage 1's teacher (``cfg.teacher``): frozen, in eval mode, never saved (its file is the record)
        self.teacher = teacher
        if teacher is not None:
            teacher.to(self.device).eval().requires_grad_(False)
        self.nets: LIRNetworks = build_models(model_config)
        for _, module in self.nets.items():
            module.to(self.device)
            if cfg.channels_last:
                module.to(memory_format=torch.channels_last)
        if init_state is not None:
            self.nets.restorer().load_state_dict(init_state)
        #: --gx-noise-model: the gate of G_X's residual on the noise model, zero at the start
        self.noise_gate = nn.Parameter(torch.zeros((), device=self.device))
        self.fake_noisy: NoiseModelGX | None = None
        generator_params = self.nets.generator_parameters()
        if cfg.gx_noise_model:
            if noise_model is None:
                raise ValueError("gx_noise_model needs a noise model")
            self.fake_noisy = NoiseModelGX(
                dataclasses.replace(noise_model, mix=()), self.noise_gate, cfg.gx_residual, cfg.gx_gate_scale
            )
            generator_params = [*generator_params, self.noise_gate]
        fused = {"fused": True} if self.device.type == "cuda" else {}
        adam = dict(betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **fused)
        restorer_params = [p for name in RESTORER_NETWORKS for p in getattr(self.nets, name).parameters()]
        # parameters with a stage-2 rate of their own get a group each, after the group of the rest
        # (E_Y, and whatever has none), in a fixed order: E_X^N, G_X and the gate, then E_X and G_Y
        own_rates: list[tuple[list[nn.Parameter], float]] = []
        if cfg.lir_gx_lr is not None:
            noise_params = [p for name in NOISE_GENERATOR_NETWORKS for p in getattr(self.nets, name).parameters()]
            own_rates.append(([*noise_params, self.noise_gate] if cfg.gx_noise_model else noise_params, cfg.lir_gx_lr))
        if cfg.lir_restorer_lr is not None:
            own_rates.append((restorer_params, cfg.lir_restorer_lr))
        taken = {id(p) for params, _ in own_rates for p in params}
        generator_groups: list[dict[str, Any]] = [
            {"params": [p for p in generator_params if id(p) not in taken]},
            *({"params": params, "lr": rate} for params, rate in own_rates),
        ]
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "generators": torch.optim.Adam(generator_groups, lr=cfg.lr, **adam),
            "image_discriminators": torch.optim.Adam(self.nets.image_discriminator_parameters(), lr=cfg.lr, **adam),
            "representation_discriminator": torch.optim.Adam(
                self.nets.representation_discriminator.parameters(), lr=cfg.repr_lr, **adam
            ),
            "warmup": torch.optim.Adam(restorer_params, lr=cfg.stage1_lr(), **fused),
        }
        self.lir_schedulers = {
            name: torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
            for name, opt in self.optimizers.items()
            if name != "warmup"
        }
        # reads self.warmup_steps at every step, so the boundary can be set after a probe
        self.warmup_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizers["warmup"], lambda t: warmup_lr_factor(t, self.warmup_steps)
        )
        self.schedulers = {**self.lir_schedulers, "warmup": self.warmup_scheduler}
        self._scaler_on = amp_dtype == torch.float16
        self.scalers = {
            name: torch.amp.GradScaler(self.device.type, enabled=self._scaler_on) for name in self.optimizers
        }
        #: the average's warm-up forgets the start, random or trained. With the full decay from the
        #: first step, a trained start kept 0.999^1200 = 30 % of the weight after the default 1,200
        #: steps, and the shipped average scored 0.65 dB under the run's own raw weights on its
        #: held-out images (README, "The moving average of a short fine-tune"). A trained start
        #: counts as TRAINED_START_PRIOR_STEPS steps already averaged, so a very short run still
        #: ships mostly its start, and a default-length one has forgotten it.
        self.ema_warm_up = True
        self.ema_prior_steps = 0 if init_state is None else TRAINED_START_PRIOR_STEPS
        self.ema = self._new_average() if cfg.ema_decay > 0 else None

        # the modules whose forward feeds a backward that trains them go through DDP (and compile)
        self.train_modules: dict[str, Any] = {}
        for name, module in self.nets.items():
            wrapped: Any = module
            if self.dist.enabled:
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [self.device.index] if self.device.type == "cuda" else None
                wrapped = DDP(module, device_ids=ids)
            if cfg.compile:
                wrapped = torch.compile(wrapped)
            self.train_modules[name] = wrapped
        self.forward = TrainingForward(self.train_modules, level_input=model_config.level_input)

    # -- what the loop asks ----------------------------------------------------------------------

    @property
    def in_warmup(self) -> bool:
        """Whether the next step belongs to stage 1 (the warm start)."""
        return self.step < self.warmup_steps

    @property
    def stage(self) -> int:
        """The stage of the next step: 1 (warm start) or 2 (LIR)."""
        return 1 if self.in_warmup else 2

    @property
    def restorer_frozen(self) -> bool:
        """Whether the next step is one of stage 2's first ``lir_freeze_steps``, where E_X and G_Y hold still."""
        return self.warmup_steps <= self.step < self.warmup_steps + self.cfg.lir_freeze_steps

    def learning_rates(self, stage: int | None = None) -> dict[str, float]:
        """The current rate of ``stage``'s restorer optimiser (default: the next step's stage) and
        the representation discriminator's."""
        main = self.optimizers["warmup" if (stage or self.stage) == 1 else "generators"]
        return {
            "lr": main.param_groups[0]["lr"],
            "lr_repr": self.optimizers["representation_discriminator"].param_groups[0]["lr"],
        }

    @property
    def shipped_ema_decay(self) -> float:
        """The decay of the average that ships, 0.0 when the raw weights ship."""
        return self.cfg.ema_decay if self.ema is not None else 0.0

    def shipped_restorer(self) -> Restorer:
        """What ``restorer.safetensors`` holds and validation scores: the moving average, else the live weights."""
        return self.ema.average if self.ema is not None else self.nets.restorer()

    def train(self) -> None:
        for _, module in self.nets.items():
            module.train()

    def autocast(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -- one step --------------------------------------------------------------------------------

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> Losses:
        """One step on a batch (noisy ``x``, clean ``y``, both N x 3 x H x W in [-1, 1]); returns the
        detached loss terms by name. Stage 1 ignores ``x`` (its noisy images are drawn onto ``y``)."""
        x, y = (self.prepare(t) for t in batch)
        if self.in_warmup:
            taught_count = self.taught_count(y.shape[0])
            taught = None
            if taught_count:
                real = x[:taught_count]
                taught = (real, self.teach((real.float() + 1.0) * 0.5) * 2.0 - 1.0)
                y = y[taught_count:]
            with self.autocast():
                terms, images = warm_start_objective(
                    self.forward, self.noise_model, y, self.cfg.gray_fraction, taught=taught
                )
            self._backward_step("warmup", terms["warmup_l1"])
            self.warmup_scheduler.step()
            terms = {k: v.detach() for k, v in terms.items()}
        else:
            # frozen steps: every forward of this iteration runs E_X and G_Y in train mode, which
            # moves their BatchNorm running averages; they are put back at the end
            held = self._restorer_buffers() if self.restorer_frozen else None
            codes = self.encode_for_discriminators(x, y)
            terms = {}
            for _ in range(self.cfg.repr_steps):
                terms["d_repr"] = self.representation_step(codes)
            terms.update(self.image_discriminator_step(x, y, codes))
            if self.fake_noisy is not None:
                if self.cfg.gx_gate_ramp:
                    # a scheduled gate (Adam still holds it, so that files keep one optimiser
                    # shape; its step is overwritten here)
                    opened = (self.step - self.warmup_steps + 1) / self.cfg.gx_gate_ramp
                    with torch.no_grad():
                        self.noise_gate.fill_(min(1.0, opened) / self.cfg.gx_gate_scale)
                # how far the residual is open in this step's x_ba, for the log
                terms["gx_gate"] = self.noise_gate.detach() * self.cfg.gx_gate_scale
            g_terms, images = self.generator_step(x, y)
            terms.update(g_terms)
            for sched in self.lir_schedulers.values():
                sched.step()
            if held is not None:
                self._put_back(held)
        if self.ema is not None:
            self.ema.update(self.step)
        self.visuals = images
        self.step += 1
        return terms

    @torch.no_grad()
    def teach(self, real01: torch.Tensor) -> torch.Tensor:
        """The teacher's targets for real noisy crops in [0, 1]: one pass, or the mean over
        ``cfg.teacher_ensemble`` orientations (restore's self-ensemble), in fp32 whatever the autocast."""
        assert self.teacher is not None
        teacher = self.teacher
        if self.cfg.teacher_ensemble == 1:
            return teacher(real01)
        from invrep_cli.ensemble import self_ensemble

        def run(batch: np.ndarray) -> np.ndarray:
            return teacher(torch.from_numpy(batch).to(real01.device)).cpu().numpy()

        mean = self_ensemble(run, real01.cpu().numpy(), self.cfg.teacher_ensemble)
        return torch.from_numpy(mean).to(real01.device)

    def taught_count(self, batch: int) -> int:
        """How many of a stage-1 batch of ``batch`` crops are real noisy crops with the teacher's
        output as target: the share, rounded, at least 1 where there is a teacher, and never the
        whole batch (the synthetic crops keep what stage 1 learns from the clean domain)."""
        if self.teacher is None or batch < 2:
            return 0
        return min(batch - 1, max(1, round(self.cfg.teacher_share * batch)))

    def _backward_step(self, name: str, loss: torch.Tensor, clip: float | None = None) -> None:
        opt, scaler = self.optimizers[name], self.scalers[name]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip is not None:
            scaler.unscale_(opt)
            params = [p for group in opt.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(opt)
        scaler.update()

    def encode_for_discriminators(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """E_X(x), E_Y(y), E_X^N(x) without a graph: the discriminator steps must not reach the encoders."""
        with torch.no_grad(), self.autocast():
            code_x, features_x = self.forward.encode("noisy_encoder", x)
            return {
                "code_x": code_x,
                "features_x": features_x,
                "code_y": self.nets.clean_encoder(y),
                "noise_code_x": self.nets.noise_encoder(x),
            }

    def representation_step(self, codes: dict[str, Any]) -> torch.Tensor:
        """One D_R step: target 0 for noisy-image codes, 1 for clean-image codes (LSGAN), grad-norm clipped."""
        batch = codes["code_x"].shape[0]
        both = torch.cat([codes["code_x"], codes["code_y"]]).detach()
        with self.autocast():
            score = self.train_modules["representation_discriminator"](both)
            loss = lsgan(score[:batch], 0.0) + lsgan(score[batch:], 1.0)
        self._backward_step("representation_discriminator", loss, clip=self.cfg.repr_grad_clip)
        return loss.detach()

    def image_discriminator_step(self, x: torch.Tensor, y: torch.Tensor, codes: dict[str, Any]) -> Losses:
        """One D_X/D_Y step: real images target 1, detached fakes target 0, summed over scales."""
        nets, tm = self.nets, self.train_modules
        with torch.no_grad(), self.autocast():
            code_x = codes["code_x"]
            if self.cfg.restorer_latent_noise:
                code_x = with_latent_noise(code_x)
            fake_clean = self.forward.decode_clean(code_x, codes["features_x"], x)
            fake_noisy = synthetic_noisy(
                nets.noisy_decoder,
                with_latent_noise(codes["code_y"]),
                with_latent_noise(codes["noise_code_x"]),
                y,
                self.fake_noisy,
            )
        batch = x.shape[0]
        with self.autocast():
            # real and fake in one batch: one DDP forward per discriminator (they have no BatchNorm)
            out_x = tm["noisy_discriminator"](torch.cat([x, fake_noisy.detach()]))
            out_y = tm["clean_discriminator"](torch.cat([y, fake_clean.detach()]))
            d_noisy = lsgan([o[:batch] for o in out_x], 1.0) + lsgan([o[batch:] for o in out_x], 0.0)
            d_clean = lsgan([o[:batch] for o in out_y], 1.0) + lsgan([o[batch:] for o in out_y], 0.0)
        self._backward_step("image_discriminators", d_noisy + d_clean)
        return {"d_noisy": d_noisy.detach(), "d_clean": d_clean.detach()}

    def generator_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[Losses, dict[str, torch.Tensor]]:
        """One step of the encoders and decoders on the weighted LIR objective, discriminators frozen;
        during stage 2's first ``lir_freeze_steps`` E_X and G_Y are frozen too (weights and BatchNorm
        statistics, which ``train_step`` puts back): gradients pass through them to the networks
        stage 2 adds, nothing changes them."""
        nets = self.nets
        frozen: list[nn.Module] = [
            nets.noisy_discriminator,
            nets.clean_discriminator,
            nets.representation_discriminator,
        ]
        if self.restorer_frozen:
            frozen += [getattr(nets, name) for name in RESTORER_NETWORKS]
        for module in frozen:
            module.requires_grad_(False)
        try:
            with self.autocast():
                terms, images = lir_generator_objective(
                    self.forward, nets, x, y, self.vgg, self.fake_noisy, self.cfg.restorer_latent_noise
                )
            total = weighted_total(terms, self.loss_weights)
            if self.loss_weights.anchor > 0 and self.noise_model is not None:
                with self.autocast():
                    anchor, _ = warm_start_objective(self.forward, self.noise_model, y, self.cfg.gray_fraction)
                terms["anchor"] = anchor["warmup_l1"]
                total = total + self.loss_weights.anchor * terms["anchor"]
            self._backward_step("generators", total)
        finally:
            for module in frozen:
                module.requires_grad_(True)
        out = {k: v.detach() for k, v in terms.items()}
        out["g_total"] = total.detach()
        return out, images

    def _restorer_buffers(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: {k: b.clone() for k, b in getattr(self.nets, name).named_buffers()} for name in RESTORER_NETWORKS}

    @torch.no_grad()
    def _put_back(self, held: dict[str, dict[str, torch.Tensor]]) -> None:
        for name, buffers in held.items():
            for key, buf in getattr(self.nets, name).named_buffers():
                buf.copy_(buffers[key])

    def _new_average(self, state: dict[str, Any] | None = None) -> MovingAverage:
        return MovingAverage(
            self.nets.restorer(), self.cfg.ema_decay, state, warm_up=self.ema_warm_up, prior_steps=self.ema_prior_steps
        )

    # -- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs of the model (the keys of the checkpoint format)."""
        return {
            "step": self.step,
            "networks": {name: module.state_dict() for name, module in self.nets.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "scalers": {name: s.state_dict() for name, s in self.scalers.items()},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "ema_decay": self.shipped_ema_decay,
            "ema_warm_up": self.ema_warm_up,
            "ema_prior_steps": self.ema_prior_steps,
            "noise_gate": self.noise_gate.detach().clone(),
        }

    def load_state_dict(self, state: dict[str, Any], warn: Callable[[str], None] | None = None) -> None:
        """Load ``state_dict()``'s output. Checkpoints from before the warm start have no ``warmup``
        optimiser or scheduler; one without a moving average restarts it from the loaded weights."""
        for name, module in self.nets.items():
            module.load_state_dict(state["networks"][name])
        unstepped = set()
        for name, opt in self.optimizers.items():
            saved = state["optimizers"].get(name)
            # an optimiser that has taken no step (a stage-1 checkpoint's LIR ones) holds nothing to
            # load: it keeps this command's groups and rates, which stage 2's options may have changed
            if saved is None or not saved["state"]:
                unstepped.add(name)
                continue
            if len(saved["param_groups"]) != len(opt.param_groups):
                # a state from before the option, loaded with it (train --resume refuses that first,
                # in its option check; this is for callers of the model itself)
                raise UsageError(
                    f"--resume: the run's {name} optimiser has {len(saved['param_groups'])} parameter group(s) "
                    f"and this command's {len(opt.param_groups)}: --lir-restorer-lr and --lir-gx-lr can be added "
                    "or dropped only before stage 2's first step"
                )
            opt.load_state_dict(saved)
        for name, sched in self.schedulers.items():
            saved = state["schedulers"].get(name)
            if name in unstepped or saved is None:
                continue
            if len(saved.get("base_lrs", sched.base_lrs)) == len(sched.base_lrs):
                sched.load_state_dict(saved)
        for name, scaler in self.scalers.items():
            scaler_state = state.get("scalers", {}).get(name)
            if scaler_state and self._scaler_on:
                scaler.load_state_dict(scaler_state)
        self.step = int(state["step"])
        if "noise_gate" in state:
            with torch.no_grad():
                self.noise_gate.copy_(state["noise_gate"])
        # checkpoints from before this flag warmed every average up
        self.ema_warm_up = bool(state.get("ema_warm_up", True))
        self.ema_prior_steps = int(state.get("ema_prior_steps", 0))
        if self.ema is not None:
            if state.get("ema") is None:
                if warn is not None:
                    warn(f"--resume: the checkpoint has no moving average; it restarts from step {self.step}'s weights")
                self.ema = self._new_average()
            else:
                self.ema = self._new_average(state["ema"])
