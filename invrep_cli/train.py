"""The LIR training loop: step order (D_R, D_X/D_Y, generators), AMP, DDP, checkpoints and resume.

Progress goes through a callback taking one dict per event (``{"event": "step", ...}``), so this
module never prints; the CLI renders the events with Rich.

Run directory layout::

    RUN_DIR/log.jsonl                  one JSON object per line: start/resume, step (every loss
                                       term, lr, step time), val, checkpoint, done
    RUN_DIR/checkpoints/step_NNNNNNNN.pt   the last ``keep_checkpoints`` checkpoints
    RUN_DIR/last.pt                    the newest checkpoint (what --resume reads)
    RUN_DIR/restorer.safetensors       E_X + G_Y of the newest checkpoint, for ``invrep restore``:
                                       their exponential moving average (``ema_decay``, as
                                       Real-ESRGAN ships ``params_ema``), else the raw weights
    RUN_DIR/samples/step_NNNNNNNN.png  rows: noisy x, restored x_ab, clean y, synthetic noisy x_ba

Each iteration: ``repr_steps`` D_R steps on detached codes, one D_X/D_Y step on detached fakes, one
generator step with every LIR loss (discriminators frozen with ``requires_grad_(False)``). The codes
E_X(x), E_Y(y), E_X^N(x) for the discriminator steps are computed once per iteration without
gradients: the encoders do not change during the D_R steps and, with batch statistics in train
mode, recomputing them would give the same values (only BatchNorm running averages would be
updated more often).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from invrep_cli import __version__
from invrep_cli.checkpoint import (
    CHECKPOINT_DIR,
    LAST_CHECKPOINT,
    TRAIN_CHECKPOINT_FORMAT,
    read_train_checkpoint,
    save_restorer,
    write_train_checkpoint,
)
from invrep_cli.config import LossWeights, ModelConfig, TrainConfig
from invrep_cli.data import StepBatches, TrainData, ValPair, min_crop_for, parse_noise, prepare_data, read_image
from invrep_cli.devices import describe_device, resolve_device
from invrep_cli.ema import MovingAverage
from invrep_cli.errors import DataError, UsageError
from invrep_cli.fsutil import atomic_path
from invrep_cli.losses import lsgan, weighted_total
from invrep_cli.models import LIRNetworks, Restorer, build_models
from invrep_cli.noise import NoiseModel, fit_noise_model, parse_mix
from invrep_cli.objectives import TrainingForward, lir_generator_objective, warm_start_objective, with_latent_noise

Callback = Callable[[dict[str, Any]], None]

RESTORER_FILE = "restorer.safetensors"
STAGE1_RESTORER_FILE = "restorer-stage1.safetensors"
LOG_FILE = "log.jsonl"
SAMPLES_DIR = "samples"


# ---------------------------------------------------------------------------------------------
# small pure helpers


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> DistInfo:
    """Rank and world size as torchrun sets them (single process when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_amp(spec: str, device: torch.device) -> torch.dtype | None:
    """``auto``: bf16 on CUDA where supported, else fp16; nothing on CPU. ``none``/``bf16``/``fp16``."""
    spec = spec.strip().lower()
    if spec == "none":
        return None
    if spec == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if spec == "bf16":
        return torch.bfloat16
    if spec == "fp16":
        if device.type != "cuda":
            raise UsageError("--amp fp16 needs a CUDA device (use bf16 or none on CPU)")
        return torch.float16
    raise UsageError(f"--amp {spec!r}: choose auto, none, bf16 or fp16")


def check_crop(config: ModelConfig, crop_size: int) -> None:
    """The crop must be a multiple of the encoders' size multiple and big enough for D_X/D_Y."""
    if crop_size % config.size_multiple:
        raise UsageError(f"--crop-size {crop_size} must be a multiple of {config.size_multiple}")
    need = min_crop_for(config.disc_scales, config.disc_layers)
    if crop_size < need:
        raise UsageError(
            f"--crop-size {crop_size} is too small for {config.disc_scales} discriminator scales of "
            f"{config.disc_layers} layers (needs >= {need}); use a bigger crop or fewer --disc-scales"
        )


def rng_state() -> dict[str, Any]:
    """RNG states of torch, CUDA, numpy and python in types torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            str(np_state[0]),
            [int(v) for v in np_state[1]],
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "python": [int(py_state[0]), [int(v) for v in py_state[1]], py_state[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def to_image_uint8(x: torch.Tensor) -> np.ndarray:
    """3 x H x W in [-1, 1] -> H x W x 3 uint8."""
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()
    return arr.transpose(1, 2, 0)


@dataclass
class TrainResult:
    step: int
    steps: int
    out_dir: str
    checkpoint: str | None
    restorer: str | None
    interrupted: bool
    semantic_enabled: bool
    semantic_note: str
    device: str
    losses: dict[str, float] = field(default_factory=dict)
    step_times: list[float] = field(default_factory=list)
    validation: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        times = self.step_times[1:] or self.step_times  # the first step pays for warm-up
        data["step_time_mean"] = float(np.mean(times)) if times else None
        data["steps_per_s"] = (1.0 / data["step_time_mean"]) if data["step_time_mean"] else None
        data["step_times"] = [round(t, 4) for t in self.step_times[-50:]]
        return data


class _StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM: finish the current step, write a checkpoint, stop.

    A second Ctrl-C stops at once (no checkpoint), except under torchrun: there the terminal and
    torchrun both send SIGINT, so the second one is expected and torchrun's own SIGKILL after its
    grace period is the hard stop.
    """

    def __init__(self, escalate: bool = True) -> None:
        self.requested = False
        self.escalate = escalate
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and self.escalate and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


# ---------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    """Owns the networks, optimisers, schedulers and the loop. Build with a TrainConfig, call run()."""

    def __init__(self, config: TrainConfig, callback: Callback | None = None) -> None:
        self.cfg = config
        self.callback = callback
        self.dist = dist_from_env()
        self.out = Path(config.out_dir)
        self._log_file: Any = None
        try:
            self.data = self._setup()
        except BaseException:
            self._close_log()
            raise

    # -- reporting -------------------------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        if self.dist.is_main and self.callback is not None:
            self.callback(event)

    def warn(self, message: str) -> None:
        self.emit({"event": "warning", "message": message})
        self.log({"event": "warning", "message": message})

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        if self._log_file is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.out / LOG_FILE, "a", encoding="utf-8")  # noqa: SIM115 - closed in run()
        record = {"time": round(time.time(), 3), **record}
        self._log_file.write(json.dumps(record, default=str) + "\n")
        self._log_file.flush()

    # -- set-up ----------------------------------------------------------------------------------

    def _setup_device(self) -> torch.device:
        if self.dist.enabled:
            import torch.distributed as td

            if self.cfg.device.strip().lower() in ("auto", "cuda") and torch.cuda.is_available():
                device = torch.device("cuda", self.dist.local_rank)
                torch.cuda.set_device(device)
                backend = "nccl"
            else:
                device = resolve_device("cpu" if self.cfg.device == "auto" else self.cfg.device)
                backend = "gloo" if device.type == "cpu" else "nccl"
            if not td.is_initialized():
                td.init_process_group(backend=backend)
            return device
        return resolve_device(self.cfg.device)

    def _check_options(self) -> None:
        cfg = self.cfg
        for name, value, low in (
            ("--steps", cfg.steps, 1),
            ("--batch-size", cfg.batch_size, 1),
            ("--workers", cfg.workers, 0),
            ("--checkpoint-every", cfg.checkpoint_every, 1),
            ("--sample-every", cfg.sample_every, 1),
            ("--val-every", cfg.val_every, 1),
            ("--log-every", cfg.log_every, 1),
            ("--keep", cfg.keep_checkpoints, 1),
        ):
            if value < low:
                raise UsageError(f"{name} must be >= {low}, got {value}")
        if cfg.lr <= 0 or cfg.repr_lr <= 0 or cfg.warmup_lr <= 0:
            raise UsageError("learning rates must be positive")
        low, high = cfg.noise_scale
        if not 0 < low <= high:
            raise UsageError(f"--noise-scale must be LOW-HIGH with 0 < LOW <= HIGH, got {low:g}-{high:g}")
        if not 0.0 <= cfg.gray_fraction <= 1.0:
            raise UsageError(f"--gray-fraction must be in [0, 1], got {cfg.gray_fraction}")
        if not 0.0 <= cfg.jpeg_fraction <= 1.0:
            raise UsageError(f"--jpeg-fraction must be in [0, 1], got {cfg.jpeg_fraction}")
        if cfg.init_weights is not None and cfg.resume:
            raise UsageError("--init-weights starts a run; --resume continues one: give one of them")
        if cfg.warmup_steps < 0:
            raise UsageError(f"--warmup-steps must be >= 0, got {cfg.warmup_steps}")
        if cfg.noise_mix is not None:
            try:
                parse_mix(cfg.noise_mix)
            except ValueError as exc:
                raise UsageError(f"--noise-mix {cfg.noise_mix!r}: {exc}") from None
        if cfg.noise_fit_images < 1:
            raise UsageError(f"--noise-fit-images must be >= 1, got {cfg.noise_fit_images}")
        if not 0.0 <= cfg.ema_decay < 1.0:
            raise UsageError(f"--ema must be in [0, 1), got {cfg.ema_decay}")
        for f in dataclasses.fields(LossWeights):
            if getattr(cfg.losses, f.name) < 0:
                raise UsageError(f"loss weight {f.name} must be >= 0")

    def _load_resume(self) -> dict[str, Any] | None:
        last = self.out / LAST_CHECKPOINT
        if not self.cfg.resume:
            if last.exists():
                raise UsageError(f"{self.out} already holds a training run ({last}); pass --resume or another --out")
            return None
        if not last.is_file():
            raise UsageError(f"--resume: no checkpoint to resume in {self.out} (expected {last})")
        return read_train_checkpoint(last)

    def _setup_noise_model(self, ckpt: dict[str, Any] | None, data: TrainData) -> NoiseModel | None:
        """Stage 1's noise model: from the checkpoint on resume, else the --synthetic spec, else fitted
        to (at most ``noise_fit_images`` evenly spaced) images of the --noisy folder."""
        cfg = self.cfg
        if cfg.warmup_steps == 0:
            return None
        if ckpt is not None and ckpt.get("noise_model"):
            return NoiseModel.from_dict(ckpt["noise_model"])
        if cfg.synthetic is not None:
            model = NoiseModel(spec=parse_noise(cfg.synthetic), source="--synthetic")
        else:
            entries = data.dataset.noisy
            picks = np.unique(np.linspace(0, len(entries) - 1, min(cfg.noise_fit_images, len(entries))).astype(int))
            images, paths = [], []
            for i in picks:
                try:
                    images.append(read_image(entries[int(i)].path))
                    paths.append(entries[int(i)].path)
                except Exception as exc:  # scan_images read them once; a file may change since
                    self.warn(f"noise model: skipping {entries[int(i)].path}: {exc}")
            try:
                fitted = fit_noise_model(
                    images, source=f"{len(images)} images of {cfg.noisy_dir}", paths=paths, match=cfg.match_levels
                )
                model = dataclasses.replace(fitted, level_range=tuple(cfg.noise_scale), jpeg_fraction=cfg.jpeg_fraction)
            except ValueError as exc:
                raise DataError(
                    f"--noisy {cfg.noisy_dir}: cannot fit a noise model for the warm start: {exc} "
                    "(give larger noisy images, or --warmup-steps 0 for LIR without a warm start)"
                ) from None
        if cfg.noise_mix is not None:
            model = dataclasses.replace(model, mix=parse_mix(cfg.noise_mix))
        record = {"event": "noise_model", "summary": model.describe(), "model": model.to_dict()}
        self.log(record)
        self.emit({"event": "noise_model", "summary": model.describe()})
        return model

    def _setup_vgg(self) -> tuple[nn.Module | None, str]:
        if self.cfg.losses.semantic == 0:
            return None, "disabled: --w-semantic 0"
        from invrep_cli.vgg import resolve_vgg

        def progress(done: int, total: int | None) -> None:
            self.emit({"event": "download", "what": "VGG19 weights", "done": done, "total": total})

        if self.dist.is_main:
            res = resolve_vgg(self.cfg.vgg_weights, progress=progress)
        if self.dist.enabled:
            import torch.distributed as td

            td.barrier()  # rank 0 downloads into the cache; the others then read it from there
            if not self.dist.is_main:
                res = resolve_vgg(self.cfg.vgg_weights, allow_download=False)
        module = res.module
        if self.dist.enabled:
            import torch.distributed as td

            flag = torch.tensor([1 if module is not None else 0], device=self.device)
            td.all_reduce(flag, op=td.ReduceOp.MIN)  # every rank must run the same loss
            if int(flag.item()) == 0:
                module = None
        if module is None:
            note = f"disabled: no VGG19 weights ({res.reason})"
            self.warn(
                f"semantic-consistency loss DISABLED (weight 0): no VGG19 weights. Tried: {res.reason}. "
                "Pass --vgg-weights PATH to a torchvision vgg19-dcbb9e9d.pth to enable it."
            )
            return None, note
        module = module.to(self.device)
        if self.cfg.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module, f"enabled: {res.source}"

    def _build(self, ckpt: dict[str, Any] | None) -> None:
        cfg = self.cfg
        device = self.device
        self.nets: LIRNetworks = build_models(self.model_config)
        for _, module in self.nets.items():
            module.to(device)
            if cfg.channels_last:
                module.to(memory_format=torch.channels_last)
        fused = {"fused": True} if device.type == "cuda" else {}
        adam = dict(betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **fused)
        self.opt_g = torch.optim.Adam(self.nets.generator_parameters(), lr=cfg.lr, **adam)
        self.opt_d = torch.optim.Adam(self.nets.image_discriminator_parameters(), lr=cfg.lr, **adam)
        self.opt_r = torch.optim.Adam(self.nets.representation_discriminator.parameters(), lr=cfg.repr_lr, **adam)
        restorer_params = [*self.nets.noisy_encoder.parameters(), *self.nets.clean_decoder.parameters()]
        self.opt_warmup = torch.optim.Adam(restorer_params, lr=cfg.warmup_lr, **fused)
        self.optimizers = {
            "generators": self.opt_g,
            "image_discriminators": self.opt_d,
            "representation_discriminator": self.opt_r,
            "warmup": self.opt_warmup,
        }
        self.lir_schedulers = {
            name: torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
            for name, opt in self.optimizers.items()
            if name != "warmup"
        }
        total = max(1, cfg.warmup_steps)
        self.warmup_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.opt_warmup, lambda t: 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))
        )
        self.schedulers = {**self.lir_schedulers, "warmup": self.warmup_scheduler}
        scaler_on = self.amp_dtype == torch.float16
        self.scalers = {name: torch.amp.GradScaler(device.type, enabled=scaler_on) for name in self.optimizers}
        self.step = 0
        if ckpt is not None:
            for name, module in self.nets.items():
                module.load_state_dict(ckpt["networks"][name])
            for name, opt in self.optimizers.items():
                if name in ckpt["optimizers"]:  # checkpoints from before the warm start have no "warmup"
                    opt.load_state_dict(ckpt["optimizers"][name])
            for name, sched in self.schedulers.items():
                if name in ckpt["schedulers"]:
                    sched.load_state_dict(ckpt["schedulers"][name])
            for name, scaler in self.scalers.items():
                state = ckpt.get("scalers", {}).get(name)
                if state and scaler_on:
                    scaler.load_state_dict(state)
            self.step = int(ckpt["step"])
            set_rng_state(ckpt["rng"])
            if self.dist.enabled and not self.dist.is_main:
                # only rank 0's RNG state is stored; other ranks get their own distinct stream
                torch.manual_seed(self.cfg.seed + 1000 * self.dist.rank + self.step)

        elif self.init_state is not None:
            self.nets.restorer().load_state_dict(self.init_state)

        self._build_ema(ckpt)

        # the modules whose forward feeds a backward that trains them go through DDP (and compile)
        self.train_modules: dict[str, Any] = {}
        for name, module in self.nets.items():
            wrapped: Any = module
            if self.dist.enabled:
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [device.index] if device.type == "cuda" else None
                wrapped = DDP(module, device_ids=ids)
            if cfg.compile:
                wrapped = torch.compile(wrapped)
            self.train_modules[name] = wrapped
        self.forward = TrainingForward(self.train_modules)

    def _build_ema(self, ckpt: dict[str, Any] | None) -> None:
        """The moving average of E_X and G_Y, from the checkpoint when it has one."""
        self.ema: MovingAverage | None = None
        if self.cfg.ema_decay <= 0:
            return
        state = ckpt.get("ema") if ckpt is not None else None
        if state is None and ckpt is not None:
            self.warn(f"--resume: the checkpoint has no moving average; it starts from the weights of step {self.step}")
        self.ema = MovingAverage(self.nets.restorer(), self.cfg.ema_decay, state)

    @property
    def shipped_ema_decay(self) -> float:
        """The decay of the average that ships, 0.0 when the raw weights ship."""
        return self.cfg.ema_decay if self.ema is not None else 0.0

    def shipped_restorer(self) -> Restorer:
        """What ``restorer.safetensors`` holds and validation scores: the moving average, else the live weights."""
        return self.ema.average if self.ema is not None else self.nets.restorer()

    def _loader(self, dataset: torch.utils.data.Dataset) -> torch.utils.data.DataLoader:
        sampler = StepBatches(self.step, self.cfg.steps, self.cfg.batch_size, self.dist.rank, self.dist.world_size)
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=self.cfg.workers,
            pin_memory=self.device.type == "cuda",
            # a private generator: creating the iterator must not consume the global torch RNG,
            # or a resumed run's latent noise would differ from an uninterrupted run's
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )

    def autocast(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -- one iteration ---------------------------------------------------------------------------

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

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

    def image_discriminator_step(
        self, x: torch.Tensor, y: torch.Tensor, codes: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """One D_X/D_Y step: real images target 1, detached fakes target 0, summed over scales."""
        nets, tm = self.nets, self.train_modules
        with torch.no_grad(), self.autocast():
            fake_clean = self.forward.decode_clean(with_latent_noise(codes["code_x"]), codes["features_x"], x)
            fake_noisy = nets.noisy_decoder(
                torch.cat([with_latent_noise(codes["code_y"]), with_latent_noise(codes["noise_code_x"])], 1)
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

    def generator_step(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One step of all encoders and decoders on the weighted LIR objective, discriminators frozen."""
        nets = self.nets
        discs = (nets.noisy_discriminator, nets.clean_discriminator, nets.representation_discriminator)
        for d in discs:
            d.requires_grad_(False)
        try:
            with self.autocast():
                terms, images = lir_generator_objective(self.forward, nets, x, y, self.vgg)
            total = weighted_total(terms, self.loss_weights)
            self._backward_step("generators", total)
        finally:
            for d in discs:
                d.requires_grad_(True)
        out = {k: v.detach() for k, v in terms.items()}
        out["g_total"] = total.detach()
        return out, images

    @property
    def in_warmup(self) -> bool:
        """Whether the next step belongs to stage 1 (the warm start)."""
        return self.step < self.cfg.warmup_steps

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One step on noisy ``x`` and clean ``y`` (both in [-1, 1]). Stage 1: one step of E_X and
        G_Y on ``y`` with noise from the noise model. Stage 2, one LIR iteration: ``repr_steps`` D_R
        steps, one D_X/D_Y step, one generator step. Returns (loss terms, images for samples)."""
        if self.in_warmup:
            with self.autocast():
                terms, images = warm_start_objective(self.forward, self.noise_model, y, self.cfg.gray_fraction)
            self._backward_step("warmup", terms["warmup_l1"])
            self.warmup_scheduler.step()
            terms = {k: v.detach() for k, v in terms.items()}
        else:
            codes = self.encode_for_discriminators(x, y)
            terms = {}
            for _ in range(self.cfg.repr_steps):
                terms["d_repr"] = self.representation_step(codes)
            terms.update(self.image_discriminator_step(x, y, codes))
            g_terms, images = self.generator_step(x, y)
            terms.update(g_terms)
            for sched in self.lir_schedulers.values():
                sched.step()
        if self.ema is not None:
            self.ema.update(self.step)
        return terms, images

    # -- outputs ---------------------------------------------------------------------------------

    def checkpoint_dict(self) -> dict[str, Any]:
        cfg_dict = dataclasses.asdict(self.cfg)
        cfg_dict["model"] = self.model_config.to_dict()
        cfg_dict["betas"] = list(cfg_dict["betas"])
        return {
            "format": TRAIN_CHECKPOINT_FORMAT,
            "invrep_version": __version__,
            "model_config": self.model_config.to_dict(),
            "step": self.step,
            "networks": {name: module.state_dict() for name, module in self.nets.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "scalers": {name: s.state_dict() for name, s in self.scalers.items()},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "ema_decay": self.shipped_ema_decay,
            "train_config": cfg_dict,
            "rng": rng_state(),
            "semantic_enabled": self.vgg is not None,
            "semantic_note": self.semantic_note,
            "warmup_steps": self.cfg.warmup_steps,
            "noise_model": self.noise_model.to_dict() if self.noise_model else None,
        }

    def save_checkpoint(self) -> Path:
        path = write_train_checkpoint(self.out, self.checkpoint_dict(), self.cfg.keep_checkpoints)
        save_restorer(
            self.shipped_restorer(),
            self.out / RESTORER_FILE,
            meta={
                "source": "invrep train",
                "step": self.step,
                "semantic_enabled": self.vgg is not None,
                "ema_decay": self.shipped_ema_decay,
                "stage": 1 if self.step <= self.cfg.warmup_steps else 2,
                "warmup_steps": self.cfg.warmup_steps,
                "noise_model": self.noise_model.describe() if self.noise_model else "none (no warm start)",
            },
        )
        self.last_checkpoint_step = self.step
        self.log({"event": "checkpoint", "step": self.step, "path": str(path)})
        self.emit({"event": "checkpoint", "step": self.step, "path": str(path)})
        return path

    def save_samples(self, images: dict[str, torch.Tensor]) -> Path:
        from PIL import Image

        n = min(4, images["x"].shape[0])
        rows = [
            np.concatenate([to_image_uint8(images[key][i]) for i in range(n)], axis=1)
            for key in ("x", "x_ab", "y", "x_ba")
        ]
        path = self.out / SAMPLES_DIR / f"step_{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Image.fromarray(np.concatenate(rows, axis=0)).save(tmp, format="PNG")
        self.emit({"event": "sample", "step": self.step, "path": str(path)})
        return path

    @torch.no_grad()
    def validate(self, pairs: list[ValPair]) -> dict[str, float]:
        """PSNR/SSIM (skimage) of the shipped restorer (the moving average unless --ema 0) on whole
        validation images, BatchNorm in eval mode."""
        from skimage.metrics import peak_signal_noise_ratio, structural_similarity

        restorer = self.shipped_restorer().eval()
        psnrs, ssims = [], []
        try:
            for pair in pairs:
                inp = torch.from_numpy(pair.noisy.transpose(2, 0, 1)).unsqueeze(0).to(self.device)
                with self.autocast():
                    out = restorer(inp)
                pred = out[0].float().cpu().numpy().transpose(1, 2, 0).astype(np.float64)
                gt = pair.clean.astype(np.float64)
                psnrs.append(peak_signal_noise_ratio(gt, pred, data_range=1.0))
                ssims.append(structural_similarity(gt, pred, channel_axis=-1, data_range=1.0))
        finally:
            for name in ("noisy_encoder", "clean_decoder"):
                getattr(self.nets, name).train()
        result = {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "images": len(pairs)}
        self.log({"event": "val", "step": self.step, **result})
        self.emit({"event": "val", "step": self.step, **result})
        return result

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        finished = False
        try:
            result = self._run()
            finished = True
            return result
        finally:
            self._close_log()
            if self.dist.enabled:
                import torch.distributed as td

                if td.is_initialized():
                    if finished:
                        # rank 0 writes the final checkpoint while the others wait: no rank tears the
                        # process group down under another
                        td.barrier()
                    td.destroy_process_group()

    def _setup(self) -> TrainData:
        """Check options and data, pick the device, build networks and optimisers (or load them
        from RUN_DIR/last.pt with --resume). Raises UsageError/DataError before any training."""
        cfg = self.cfg
        self._check_options()
        ckpt = self._load_resume()
        self.init_state = None
        if ckpt:
            self.model_config = ModelConfig.from_dict(ckpt["model_config"])
        elif cfg.init_weights:
            from invrep_cli.checkpoint import load_restorer

            restorer, _ = load_restorer(cfg.init_weights)
            self.model_config, self.init_state = restorer.config, restorer.state_dict()
            if self.model_config != cfg.model:
                self.warn(f"--init-weights: using the file's model config {self.model_config.name!r}")
        else:
            self.model_config = cfg.model
        if ckpt and self.model_config != cfg.model:
            self.warn(
                f"--resume: using the checkpoint's model config {self.model_config.name!r}, not the options given"
            )
        if ckpt:
            # the stage boundary belongs to the run: a checkpoint from before the warm start existed
            # was LIR from step 0
            run_warmup = int(ckpt.get("warmup_steps", 0))
            if run_warmup != cfg.warmup_steps:
                self.warn(f"--resume: keeping the run's --warmup-steps {run_warmup} (not {cfg.warmup_steps})")
                self.cfg = cfg = dataclasses.replace(cfg, warmup_steps=run_warmup)
        check_crop(self.model_config, cfg.crop_size)
        data: TrainData = prepare_data(
            clean_dir=cfg.clean_dir,
            noisy_dir=cfg.noisy_dir,
            synthetic=cfg.synthetic,
            crop_size=cfg.crop_size,
            seed=cfg.seed,
            val_noisy_dir=cfg.val_noisy_dir,
            val_clean_dir=cfg.val_clean_dir,
            warn=self.warn,
        )
        self.device = self._setup_device()
        if self.device.type == "cuda":
            # fixed crop sizes: let cuDNN pick the fastest convolution algorithms once
            torch.backends.cudnn.benchmark = True
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        seed_everything(cfg.seed + self.dist.rank)
        self.noise_model = self._setup_noise_model(ckpt, data)
        self.vgg, self.semantic_note = self._setup_vgg()
        self.loss_weights = cfg.losses if self.vgg is not None else dataclasses.replace(cfg.losses, semantic=0.0)
        self._build(ckpt)
        self.last_checkpoint_step = self.step
        start = {
            "event": "resume" if ckpt else "start",
            "step": self.step,
            "steps": cfg.steps,
            "device": describe_device(self.device),
            "world_size": self.dist.world_size,
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "none",
            "model_config": self.model_config.to_dict(),
            "data": data.description,
            "validation_images": len(data.validation),
            "semantic_enabled": self.vgg is not None,
            "semantic_note": self.semantic_note,
            "loss_weights": dataclasses.asdict(self.loss_weights),
            "warmup_steps": cfg.warmup_steps,
            "noise_model": self.noise_model.describe() if self.noise_model else None,
        }
        self.log(start)
        self.emit(start)
        return data

    def _run(self) -> TrainResult:
        cfg = self.cfg
        data = self.data
        result = TrainResult(
            step=self.step,
            steps=cfg.steps,
            out_dir=str(self.out),
            checkpoint=None,
            restorer=None,
            interrupted=False,
            semantic_enabled=self.vgg is not None,
            semantic_note=self.semantic_note,
            device=describe_device(self.device),
        )
        loader = self._loader(data.dataset)
        for _, module in self.nets.items():
            module.train()
        with _StopFlag(escalate=not self.dist.enabled) as stop:
            iterator = iter(loader)
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                try:
                    x, y = next(iterator)
                except StopIteration:
                    break
                except RuntimeError:
                    if stop.requested:  # Ctrl-C also reached the loader's workers
                        break
                    raise
                stage = 1 if self.in_warmup else 2
                terms, images = self.train_step(self._prepare(x), self._prepare(y))
                self.step += 1
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                step_time = time.perf_counter() - t0
                result.step_times.append(step_time)
                event: dict[str, Any] = {"event": "step", "step": self.step, "steps": cfg.steps, "step_time": step_time}
                if self.step % cfg.log_every == 0 or self.step == cfg.steps or self.step == 1:
                    losses = {k: float(v) for k, v in terms.items()}
                    result.losses = losses
                    record = {
                        "event": "step",
                        "step": self.step,
                        "stage": stage,
                        "lr": (self.opt_warmup if stage == 1 else self.opt_g).param_groups[0]["lr"],
                        "lr_repr": self.opt_r.param_groups[0]["lr"],
                        "step_time": round(step_time, 5),
                        **losses,
                    }
                    self.log(record)
                    event["losses"] = losses
                    event["lr"] = record["lr"]
                self.emit(event)
                if self.dist.is_main:
                    if self.step % cfg.sample_every == 0:
                        self.save_samples(images)
                    if data.validation and self.step % cfg.val_every == 0:
                        result.validation = self.validate(data.validation)
                    if self.step % cfg.checkpoint_every == 0 or self.step == cfg.warmup_steps:
                        self.save_checkpoint()
                    if self.step == cfg.warmup_steps:
                        # what stage 1 alone gives, kept beside what stage 2 makes of it
                        with atomic_path(self.out / STAGE1_RESTORER_FILE) as tmp:
                            shutil.copyfile(self.out / RESTORER_FILE, tmp)
                        self.log({"event": "stage", "stage": 2, "step": self.step})
                if self._stop_requested(stop):
                    result.interrupted = True
                    break
            del iterator
        if self.dist.is_main:
            # the final (or Ctrl-C) checkpoint, unless the loop just wrote this step's
            if self.last_checkpoint_step != self.step or not (self.out / LAST_CHECKPOINT).exists():
                self.save_checkpoint()
            result.checkpoint = str(self.out / CHECKPOINT_DIR / f"step_{self.step:08d}.pt")
            result.restorer = str(self.out / RESTORER_FILE)
        result.step = self.step
        self.log({"event": "interrupted" if result.interrupted else "done", "step": self.step})
        self.emit({"event": "done", **result.to_dict()})
        return result

    def _stop_requested(self, stop: _StopFlag) -> bool:
        if not self.dist.enabled:
            return stop.requested
        import torch.distributed as td

        # every rank must leave the loop at the same step, or the next collective would hang
        flag = torch.tensor([1 if stop.requested else 0], device=self.device)
        td.all_reduce(flag, op=td.ReduceOp.MAX)
        return bool(flag.item())


def train(config: TrainConfig, callback: Callback | None = None) -> TrainResult:
    """Train LIR as ``config`` says; progress events go to ``callback`` (rank 0 only)."""
    return Trainer(config, callback).run()
