"""The training loop: when to log, sample, validate, checkpoint and report. The networks and their
steps are ``LIRModel``'s; the folder is ``RunFolder``'s; this module only decides when.

Progress goes through a callback taking one dict per event (``{"event": "step", ...}``), so the
core never prints; the CLI renders the events with Rich.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from invrep_cli import __version__
from invrep_cli.checkpoint import CHECKPOINT_DIR, TRAIN_CHECKPOINT_FORMAT, load_restorer
from invrep_cli.config import DEFAULT_WARMUP_LR, INIT_AUTO, INIT_NONE, ModelConfig, TrainConfig
from invrep_cli.data import StepBatches, TrainData, ValPair, add_noise, min_crop_for, prepare_data, read_image
from invrep_cli.devices import describe_device
from invrep_cli.distenv import dist_from_env
from invrep_cli.errors import UsageError
from invrep_cli.models.restorer import Restorer, conditioned_state
from invrep_cli.noise import NoiseModel
from invrep_cli.training.budget import format_duration, stage1_steps_for_budget
from invrep_cli.training.camera_teacher import CAMERA_TEACHER_SHARE, CAMERA_WARMUP_LR, choose_camera_teacher
from invrep_cli.training.init_weights import choose_init_weights
from invrep_cli.training.model import LIRModel
from invrep_cli.training.noise_setup import build_noise_model, evenly_spaced
from invrep_cli.training.report import SCORE_CROP, write_report
from invrep_cli.training.resume import check_resume, resumed_model_config
from invrep_cli.training.run_folder import (
    REPORT_FILE,
    RESTORER_FILE,
    STAGE1_RESTORER_FILE,
    STAGE2_RESTORER_FILE,
    RunFolder,
)
from invrep_cli.training.runtime import StopFlag, resolve_amp, rng_state, seed_everything, set_rng_state, setup_device
from invrep_cli.training.semantic import setup_semantic

Callback = Callable[[dict[str, Any]], None]

#: steps timed by a --time probe, after one untimed step that pays for allocation and first reads
PROBE_STEPS = {1: 3, 2: 2}


def _start_state(start: Restorer, config: ModelConfig) -> dict[str, torch.Tensor]:
    """The start file's weights for ``config``'s restorer: a blind file's widened by a zero level
    channel when ``config`` is conditioned (``--level-input``, ``conditioned_state``)."""
    state = start.state_dict()
    return conditioned_state(state) if config.level_input and not start.config.level_input else state


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
    warmup_steps: int = 0
    init_weights: str = ""
    losses: dict[str, float] = field(default_factory=dict)
    step_times: list[float] = field(default_factory=list)
    validation: dict[str, float] | None = None
    plan: dict[str, Any] | None = None
    report: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        times = self.step_times[1:] or self.step_times  # the first step pays for warm-up
        data["step_time_mean"] = float(np.mean(times)) if times else None
        data["steps_per_s"] = (1.0 / data["step_time_mean"]) if data["step_time_mean"] else None
        data["step_times"] = [round(t, 4) for t in self.step_times[-50:]]
        return data


class Trainer:
    """Build with a TrainConfig (everything is checked and set up before the first step), call run()."""

    def __init__(self, config: TrainConfig, callback: Callback | None = None) -> None:
        self.started = time.monotonic()
        self.cfg = config
        self.callback = callback
        self.dist = dist_from_env()
        self.folder = RunFolder(config.out_dir, writer=self.dist.is_main)
        self.plan: dict[str, Any] | None = None
        try:
            self._setup()
        except BaseException:
            self.folder.close()
            raise

    # -- reporting -------------------------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        if self.dist.is_main and self.callback is not None:
            self.callback(event)

    def log(self, record: dict[str, Any]) -> None:
        self.folder.log(record)

    def warn(self, message: str) -> None:
        self.emit({"event": "warning", "message": message})
        self.log({"event": "warning", "message": message})

    # -- set-up ----------------------------------------------------------------------------------

    def _setup(self) -> None:
        """Check options and data, pick the device, fit the noise, build the model (or load it from
        RUN_DIR/last.pt with --resume), size the steps. UsageError/DataError before any training."""
        cfg = self.cfg
        ckpt = self.folder.checkpoint_for_resume(cfg.resume)
        if ckpt is not None:
            check_resume(cfg, ckpt)
        init_state, self.init_note, self.init_path = None, "", None
        # what the run started from, kept across resumes: the option check reads it to know whether
        # the networks came from a file (a resuming command cannot repeat --init-weights PATH)
        run = (ckpt or {}).get("train_config") or {}
        self.run_init_weights = run.get("init_weights", cfg.init_weights)
        budgeted = cfg.budget_sizes_steps
        if ckpt is not None and cfg.time_budget == run.get("time_budget"):
            budgeted = False  # the run's own budget, repeated: continue to the steps it planned
        elif cfg.time_budget is not None and not budgeted:
            self.warn("--time is not used: --steps or --warmup-steps gives the step count, which wins")
        if ckpt is not None:
            model_config = resumed_model_config(cfg, ckpt)
            self.init_note = str(ckpt.get("init_weights_used", ""))
            self.init_path = ckpt.get("init_weights_path")  # what the report compares with
        elif cfg.init_weights not in (INIT_AUTO, INIT_NONE):
            restorer, _ = load_restorer(cfg.init_weights)
            self.init_path, self.init_note = cfg.init_weights, f"--init-weights {cfg.init_weights}"
            # --level-input conditions a blind file; a conditioned file stays conditioned
            level_input = cfg.model.level_input or restorer.config.level_input
            asked = dataclasses.replace(cfg.model, level_input=level_input)
            model_config = dataclasses.replace(restorer.config, level_input=level_input)
            if model_config.restorer_shape() == asked.restorer_shape():
                model_config = asked  # the file holds no G_X: the one asked for is built
            else:
                self.warn(f"--init-weights: using the file's model config {model_config.name!r}")
            init_state = _start_state(restorer, model_config)
        else:
            model_config = cfg.model
        check_crop(model_config, cfg.crop_size)
        # before the folders are scanned and the noise fitted: a wrong --teacher path fails at once
        teacher = load_restorer(cfg.teacher)[0] if cfg.teacher is not None else None
        self.data: TrainData = prepare_data(
            clean_dir=cfg.clean_dir,
            noisy_dir=cfg.noisy_dir,
            synthetic=cfg.synthetic,
            crop_size=cfg.crop_size,
            seed=cfg.seed,
            val_noisy_dir=cfg.val_noisy_dir,
            val_clean_dir=cfg.val_clean_dir,
            warn=self.warn,
        )
        self.device = setup_device(cfg.device, self.dist)
        if self.device.type == "cuda":
            # fixed crop sizes: let cuDNN pick the fastest convolution algorithms once
            torch.backends.cudnn.benchmark = True
        amp_dtype = resolve_amp(cfg.amp, self.device)
        seed_everything(cfg.seed + self.dist.rank)

        # the stage boundary belongs to the run: a resumed run keeps its own
        if ckpt is not None:
            warmup = int(ckpt.get("warmup_steps", 0))  # checkpoints from before the warm start: LIR from 0
            total = self._resumed_total(ckpt, warmup)
        elif budgeted:
            total, warmup = cfg.resolve_steps(stage1_default=1)  # placeholders until the probe
        else:
            total, warmup = cfg.resolve_steps()
        if total < 1 and not budgeted:
            raise UsageError("nothing to train: give --steps N, --warmup-steps N or --lir-steps N (at least one step)")
        # stage 1 draws from it; in stage 2 the anchor and G_X begun as the noise model do too
        needs_noise = warmup > 0 or budgeted or cfg.gx_noise_model or cfg.losses.anchor > 0
        noise_model = self._noise_model(ckpt) if needs_noise else None
        if ckpt is None and self.init_path is None:
            path, self.init_note = choose_init_weights(cfg.init_weights, model_config, noise_model)
            if path is not None:
                restorer, _ = load_restorer(path)
                init_state, self.init_path = _start_state(restorer, model_config), path
        # the teacher the run learns from: --teacher, else on a camera folder its bundled start
        # (--camera-teacher), else none; a resumed run keeps the one it started with
        self.run_teacher = (cfg.teacher, cfg.teacher_share)  # the options, as the checkpoint keeps them
        path, share, self.teacher_reason, camera_taught = None, CAMERA_TEACHER_SHARE, "", False
        used = (ckpt or {}).get("teacher_used")
        if used and cfg.teacher is None:
            path, share, self.teacher_reason = used["path"], float(used["share"]), str(used.get("reason", ""))
        elif ckpt is None and cfg.teacher is None and cfg.camera_teacher and warmup > 0:
            bundled = cfg.init_weights == INIT_AUTO
            path, self.teacher_reason = choose_camera_teacher(noise_model, self.init_path, bundled)
            camera_taught = path is not None
        cfg = copy.copy(cfg)  # what the run resolves is set on a copy, as the step plan is below
        if path is not None:
            with torch.random.fork_rng(devices=[]):  # building it draws weights: leave the run's stream
                teacher = load_restorer(path)[0]
            cfg.teacher, cfg.teacher_share = path, share
        if cfg.warmup_lr is None:  # not given: a resumed run's own, else the camera folder's or the default
            if ckpt is not None:
                cfg.warmup_lr = float((ckpt.get("train_config") or {}).get("warmup_lr", DEFAULT_WARMUP_LR))
            else:
                cfg.warmup_lr = CAMERA_WARMUP_LR if camera_taught else cfg.stage1_lr()
        self.cfg = cfg
        lir_left = (cfg.lir_steps or 0) if budgeted and ckpt is None else total - warmup
        if ckpt is not None:
            lir_left = total - max(int(ckpt["step"]), warmup)
        vgg, self.semantic_note = setup_semantic(
            weight=cfg.losses.semantic,
            lir_steps_left=lir_left,
            vgg_weights=cfg.vgg_weights,
            device=self.device,
            channels_last=cfg.channels_last,
            dist=self.dist,
            emit=self.emit,
            warn=self.warn,
        )
        if warmup == 0:
            teacher = None  # stage 1 alone reads it
        self.model = LIRModel(
            model_config,
            cfg,
            warmup_steps=warmup,
            noise_model=noise_model,
            device=self.device,
            amp_dtype=amp_dtype,
            vgg=vgg,
            dist=self.dist,
            init_state=init_state,
            teacher=teacher,
        )
        if ckpt is not None:
            self.model.load_state_dict(ckpt, warn=self.warn)
            set_rng_state(ckpt["rng"])
            if self.dist.enabled and not self.dist.is_main:
                # only rank 0's RNG state is stored; other ranks get their own distinct stream
                torch.manual_seed(cfg.seed + 1000 * self.dist.rank + self.model.step)
        if budgeted and (ckpt is None or cfg.lir_steps is None):
            total, warmup = self._size_from_probe(ckpt, total, warmup)
        # the resolved plan, set on a copy (replace() would check it again as if all were given)
        self.cfg = cfg = copy.copy(cfg)
        cfg.steps, cfg.warmup_steps, cfg.lir_steps = total, warmup, total - warmup
        self.model.cfg = cfg
        self.model.warmup_steps = warmup
        self.last_checkpoint_step = self.model.step
        start = {
            "event": "resume" if ckpt else "start",
            "step": self.model.step,
            "steps": total,
            "device": describe_device(self.device),
            "world_size": self.dist.world_size,
            "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "none",
            "model_config": model_config.to_dict(),
            "data": self.data.description,
            "validation_images": len(self.data.validation),
            "semantic_enabled": vgg is not None,
            "semantic_note": self.semantic_note,
            "loss_weights": dataclasses.asdict(self.model.loss_weights),
            "warmup_steps": warmup,
            "lir_steps": total - warmup,
            "init_weights": self.init_note,
            "warmup_lr": cfg.warmup_lr,
            "noise_model": noise_model.describe() if noise_model else None,
            "teacher": self._teacher_note() if teacher else None,
            "plan": self.plan,
        }
        self.log(start)
        self.emit(start)

    def _teacher_note(self) -> str:
        cfg = self.cfg
        ensemble = f", mean of {cfg.teacher_ensemble} orientations" if cfg.teacher_ensemble > 1 else ""
        reason = f": {self.teacher_reason}" if self.teacher_reason else ""
        return f"{cfg.teacher} on {cfg.teacher_share:g} of each stage-1 batch{ensemble}{reason}"

    def _resumed_total(self, ckpt: dict[str, Any], warmup: int) -> int:
        """A resumed run's total: --steps, else its stage 1 plus --lir-steps, else the run's own
        (--time is sized after the probe)."""
        cfg = self.cfg
        if cfg.steps is not None:
            return cfg.steps
        if cfg.lir_steps is not None:
            return warmup + cfg.lir_steps
        run = ckpt.get("train_config") or {}
        return int(run.get("steps") or ckpt["step"])

    def _noise_model(self, ckpt: dict[str, Any] | None) -> NoiseModel | None:
        """Stage 1's noise model: the checkpoint's on resume, else made now (and logged)."""
        if ckpt is not None:
            return NoiseModel.from_dict(ckpt["noise_model"]) if ckpt.get("noise_model") else None
        model = build_noise_model(self.cfg, self.data.dataset.noisy, self.warn, self.data.dataset.clean)
        self.log({"event": "noise_model", "summary": model.describe(), "model": model.to_dict()})
        self.emit({"event": "noise_model", "summary": model.describe()})
        return model

    # -- --time: a probe sizes the steps ---------------------------------------------------------

    def _probe_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.data.dataset[k] for k in range(self.cfg.batch_size)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def _time_steps(self, stage: int, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        """Median seconds of a step of ``stage`` (the model is put back by the caller)."""
        model = self.model
        model.warmup_steps = 10**12 if stage == 1 else 0
        model.step = 0 if stage == 1 else max(model.step, model.cfg.lir_freeze_steps)
        times = []
        for i in range(1 + PROBE_STEPS[stage]):
            t0 = time.perf_counter()
            model.train_step(batch)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            if i:
                times.append(time.perf_counter() - t0)
        return float(np.median(times))

    @torch.no_grad()
    def _time_restore(self) -> float:
        """Seconds of one restorer pass over a report crop (what the final report pays per pass)."""
        restorer = self.model.shipped_restorer()
        x = torch.rand(1, 3, SCORE_CROP, SCORE_CROP, device=self.device)
        t0 = time.perf_counter()
        restorer.eval()(x)
        return time.perf_counter() - t0

    def _size_from_probe(self, ckpt: dict[str, Any] | None, total: int, warmup: int) -> tuple[int, int]:
        """(total, stage-1 steps) that fit --time, from a few steps timed on the first batch and then
        undone (weights, optimisers, schedules and RNG states as they were: a --time run is the
        --steps run of the size it chose). A resumed run keeps its stage boundary: the budget sizes
        the steps of the stage it is in, and never carries stage 1 into stage 2."""
        cfg, model = self.cfg, self.model
        assert cfg.time_budget is not None
        snapshot, rng = copy.deepcopy(model.state_dict()), rng_state()
        batch = self._probe_batch()
        lir = cfg.lir_steps or 0
        resumed_stage = None if ckpt is None else (1 if model.step < warmup else 2)
        rate = {}
        for stage in (1, 2):
            wanted = resumed_stage == stage if resumed_stage is not None else (stage == 1 or lir > 0)
            if wanted:
                rate[stage] = self._time_steps(stage, batch)
        restore_s = self._time_restore()
        model.load_state_dict(snapshot)
        set_rng_state(rng)  # last: timing the restorer drew its input from the RNG too
        if self.dist.enabled:
            import torch.distributed as td

            both = torch.tensor([rate.get(1, 0.0), rate.get(2, 0.0), restore_s], device=self.device)
            td.all_reduce(both, op=td.ReduceOp.MAX)  # every rank must plan the same steps
            rate = {s: float(both[s - 1]) for s in rate}
            restore_s = float(both[2])
        images = min(cfg.report_images, self.data.noisy_count)
        reserve = 6 * images * restore_s + 2.0  # two restorers, two passes each (+ picture) per image; checkpoints
        elapsed = time.monotonic() - self.started
        step = model.step
        if resumed_stage is None:
            stage1 = stage1_steps_for_budget(cfg.time_budget, elapsed, rate[1], lir, rate.get(2, 0.0), reserve)
            total, warmup = stage1 + lir, stage1
        else:
            stage_rate = rate[resumed_stage]
            fit = stage1_steps_for_budget(cfg.time_budget, elapsed, stage_rate, 0, 0.0, reserve)
            total = min(step + fit, warmup) if resumed_stage == 1 else step + fit
        eta = max(0, min(total, warmup) - step) * rate.get(1, 0.0)
        eta += max(0, total - max(step, warmup)) * rate.get(2, 0.0)
        self.plan = {
            "time_budget_s": cfg.time_budget,
            "setup_and_probe_s": round(elapsed, 2),
            "stage1_step_s": round(rate[1], 4) if 1 in rate else None,
            "stage2_step_s": round(rate[2], 4) if 2 in rate else None,
            "reserve_s": round(reserve, 1),
            "steps": total,
            "warmup_steps": warmup,
            "eta_s": round(eta + reserve, 1),
        }
        self.log({"event": "plan", **self.plan})
        self.emit({"event": "plan", **self.plan, "eta": format_duration(eta + reserve)})
        return total, warmup

    # -- outputs ---------------------------------------------------------------------------------

    def checkpoint_dict(self) -> dict[str, Any]:
        model = self.model
        cfg_dict = dataclasses.asdict(self.cfg)
        cfg_dict["model"] = model.config.to_dict()
        cfg_dict["init_weights"] = self.run_init_weights
        cfg_dict["teacher"], cfg_dict["teacher_share"] = self.run_teacher  # as given: a resume repeats them
        cfg_dict["betas"] = list(cfg_dict["betas"])
        return {
            "format": TRAIN_CHECKPOINT_FORMAT,
            "invrep_version": __version__,
            "model_config": model.config.to_dict(),
            **model.state_dict(),
            "train_config": cfg_dict,
            "rng": rng_state(),
            "semantic_enabled": model.vgg is not None,
            "semantic_note": self.semantic_note,
            "warmup_steps": model.warmup_steps,
            "noise_model": model.noise_model.to_dict() if model.noise_model else None,
            "init_weights_used": self.init_note,
            "init_weights_path": self.init_path,
            "teacher_used": {"path": self.cfg.teacher, "share": self.cfg.teacher_share, "reason": self.teacher_reason}
            if self.model.teacher is not None
            else None,
        }

    def save_checkpoint(self) -> None:
        model = self.model
        path = self.folder.write_checkpoint(
            self.checkpoint_dict(),
            self.cfg.keep_checkpoints,
            model.shipped_restorer(),
            meta={
                "source": "invrep train",
                "step": model.step,
                "semantic_enabled": model.vgg is not None,
                "ema_decay": model.shipped_ema_decay,
                "stage": 1 if model.step <= model.warmup_steps else 2,
                "warmup_steps": model.warmup_steps,
                "init_weights": self.init_note,
                "noise_model": model.noise_model.describe() if model.noise_model else "none (no warm start)",
            },
        )
        self.last_checkpoint_step = model.step
        self.log({"event": "checkpoint", "step": model.step, "path": str(path)})
        self.emit({"event": "checkpoint", "step": model.step, "path": str(path)})

    @torch.no_grad()
    def validate(self, pairs: list[ValPair]) -> dict[str, float]:
        """PSNR/SSIM (skimage) of the shipped restorer (the moving average unless --ema 0) on whole
        validation images, BatchNorm in eval mode."""
        from skimage.metrics import peak_signal_noise_ratio, structural_similarity

        model = self.model
        restorer = model.shipped_restorer().eval()
        psnrs, ssims = [], []
        try:
            for pair in pairs:
                inp = torch.from_numpy(pair.noisy.transpose(2, 0, 1)).unsqueeze(0).to(self.device)
                with model.autocast():
                    out = restorer(inp)
                pred = out[0].float().cpu().numpy().transpose(1, 2, 0).astype(np.float64)
                gt = pair.clean.astype(np.float64)
                psnrs.append(peak_signal_noise_ratio(gt, pred, data_range=1.0))
                ssims.append(structural_similarity(gt, pred, channel_axis=-1, data_range=1.0))
        finally:
            for name in ("noisy_encoder", "clean_decoder"):
                getattr(model.nets, name).train()
        result = {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "images": len(pairs)}
        self.log({"event": "val", "step": model.step, **result})
        self.emit({"event": "val", "step": model.step, **result})
        return result

    def _noisy_folder_images(self) -> list[np.ndarray]:
        """A few images of the noisy domain as the user has them (with --synthetic: the noisy half,
        its noise drawn with a fixed seed per image)."""
        dataset = self.data.dataset
        out = []
        for k, entry in enumerate(evenly_spaced(dataset.noisy, self.cfg.report_images)):
            try:
                img = read_image(entry.path)
            except Exception as exc:
                self.warn(f"report: skipping {entry.path}: {exc}")
                continue
            if dataset.noise is not None:
                img = add_noise(img, dataset.noise, np.random.default_rng([self.cfg.seed, 4, k]))
            out.append(img)
        return out

    def report(self) -> dict[str, Any] | None:
        """The no-reference score of the start and the trained restorer on the noisy folder, and the picture."""
        if self.cfg.report_images == 0:
            return None
        start, start_name = None, "none"
        try:
            if self.init_path is not None:
                start, _ = load_restorer(self.init_path)
                start_name = self.init_note
            else:
                from invrep_cli.weights import DEFAULT_WEIGHTS, resolve_weights

                start, _ = load_restorer(resolve_weights(None, offline=True))
                start_name = f"bundled default {DEFAULT_WEIGHTS}"
        except Exception as exc:  # the report must never cost the run its result
            self.warn(f"report: no start model to compare with ({exc})")
        trained = copy.deepcopy(self.model.shipped_restorer()).eval()
        stage1 = None
        stage1_file = self.folder.path / STAGE1_RESTORER_FILE
        if self.cfg.steps > self.cfg.warmup_steps > 0 and stage1_file.is_file():
            stage1 = load_restorer(stage1_file)[0].to(self.device)  # stage 1 alone, beside what stage 2 made
        result = write_report(
            self._noisy_folder_images(),
            trained,
            None if start is None else start.to(self.device),
            start_name,
            self.folder.path / REPORT_FILE,
            self.device,
            stage1=stage1,
            folder_noise=None if self.model.noise_model is None else self.model.noise_model.typical_fit(),
        )
        if result is None:
            self.warn("report: no image of the noisy folder has flat areas enough to fit its noise; no score")
            return None
        record = result.to_dict()
        record["shipped"] = "trained"
        if result.trained_score is None:
            self.warn(
                "report: the no-reference score could not be read on this noisy folder (SURE came out negative: "
                "its Gaussian noise model does not know clipping, which heavy noise does a lot of); see the picture"
            )
        elif result.stage1_score is not None and result.stage1_score > result.trained_score:
            # stage 2 must only ever improve on stage 1, and the user's own noisy folder is the only
            # judge there is: when it scores stage 2 lower, restorer.safetensors is stage 1's
            self.folder.ship_stage1_restorer()
            record["shipped"] = "stage 1"
            self.warn(
                f"report: stage 2 scored below stage 1 on the noisy folder ({result.trained_score:.2f} vs "
                f"{result.stage1_score:.2f} dB, no reference): {RESTORER_FILE} is stage 1's; stage 2's is "
                f"{STAGE2_RESTORER_FILE}"
            )
        elif result.start_score is not None and result.trained_score < result.start_score:
            self.warn(
                f"report: the trained model scored below its start on the noisy folder ({result.trained_score:.2f} "
                f"vs {result.start_score:.2f} dB, no reference): the start may serve this noise better"
            )
        self.log({"event": "report", **record})
        self.emit({"event": "report", **record})
        return record

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        finished = False
        try:
            result = self._run()
            finished = True
            return result
        finally:
            self.folder.close()
            if self.dist.enabled:
                import torch.distributed as td

                if td.is_initialized():
                    if finished:
                        # rank 0 writes the final checkpoint while the others wait: no rank tears the
                        # process group down under another
                        td.barrier()
                    td.destroy_process_group()

    def _loader(self) -> torch.utils.data.DataLoader:
        sampler = StepBatches(
            self.model.step, self.cfg.steps, self.cfg.batch_size, self.dist.rank, self.dist.world_size
        )
        return torch.utils.data.DataLoader(
            self.data.dataset,
            batch_sampler=sampler,
            num_workers=self.cfg.workers,
            pin_memory=self.device.type == "cuda",
            # a private generator: creating the iterator must not consume the global torch RNG,
            # or a resumed run's latent noise would differ from an uninterrupted run's
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )

    def _run(self) -> TrainResult:
        cfg, model = self.cfg, self.model
        assert cfg.steps is not None and cfg.warmup_steps is not None
        result = TrainResult(
            step=model.step,
            steps=cfg.steps,
            out_dir=str(self.folder.path),
            checkpoint=None,
            restorer=None,
            interrupted=False,
            semantic_enabled=model.vgg is not None,
            semantic_note=self.semantic_note,
            device=describe_device(self.device),
            warmup_steps=cfg.warmup_steps,
            init_weights=self.init_note,
            plan=self.plan,
        )
        if self.dist.is_main and 0 < cfg.warmup_steps == model.step < cfg.steps:
            stage1_file = self.folder.path / STAGE1_RESTORER_FILE
            if not stage1_file.is_file():
                # resumed at the boundary from a checkpoint whose folder lacks stage 1's restorer (a
                # stage-1 last.pt copied to try a stage 2): write it now, so the report can weigh
                # stage 2 against it and ship stage 1 if stage 2 scores lower
                self.save_checkpoint()
                self.folder.keep_stage1_restorer()
        loader = self._loader()
        model.train()
        with StopFlag(escalate=not self.dist.enabled) as stop:
            iterator = iter(loader)
            while model.step < cfg.steps:
                t0 = time.perf_counter()
                try:
                    batch = next(iterator)
                except StopIteration:
                    break
                except RuntimeError:
                    if stop.requested:  # Ctrl-C also reached the loader's workers
                        break
                    raise
                stage = model.stage
                terms = model.train_step(batch)
                step = model.step
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                step_time = time.perf_counter() - t0
                result.step_times.append(step_time)
                event: dict[str, Any] = {"event": "step", "step": step, "steps": cfg.steps, "step_time": step_time}
                if step % cfg.log_every == 0 or step == cfg.steps or step == 1:
                    losses = {k: float(v) for k, v in terms.items()}
                    result.losses = losses
                    rates = model.learning_rates(stage)  # the step that ends stage 1 logs stage 1's
                    record = {"event": "step", "step": step, "stage": stage, **rates,
                              "step_time": round(step_time, 5), **losses}  # fmt: skip
                    self.log(record)
                    event["losses"] = losses
                    event["lr"] = record["lr"]
                self.emit(event)
                if self.dist.is_main:
                    if step % cfg.sample_every == 0:
                        path = self.folder.save_samples(model.visuals, step)
                        self.emit({"event": "sample", "step": step, "path": str(path)})
                    if self.data.validation and step % cfg.val_every == 0:
                        result.validation = self.validate(self.data.validation)
                    if step % cfg.checkpoint_every == 0 or step == cfg.warmup_steps:
                        self.save_checkpoint()
                    if step == cfg.warmup_steps:
                        # what stage 1 alone gives, kept beside what stage 2 makes of it
                        self.folder.keep_stage1_restorer()
                        if step < cfg.steps:
                            self.log({"event": "stage", "stage": 2, "step": step})
                if self._stop_requested(stop):
                    result.interrupted = True
                    break
            del iterator
        if self.dist.is_main:
            # the final (or Ctrl-C) checkpoint, unless the loop just wrote this step's
            if self.last_checkpoint_step != model.step or not self.folder.last_checkpoint.exists():
                self.save_checkpoint()
            result.checkpoint = str(self.folder.path / CHECKPOINT_DIR / f"step_{model.step:08d}.pt")
            result.restorer = str(self.folder.restorer_file)
            if not result.interrupted and model.step >= cfg.steps:
                result.report = self.report()
        result.step = model.step
        self.log({"event": "interrupted" if result.interrupted else "done", "step": model.step})
        self.emit({"event": "done", **result.to_dict()})
        return result

    def _stop_requested(self, stop: StopFlag) -> bool:
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
