"""Configurations. ``ModelConfig`` is stored in every checkpoint and weights file, so restore and
export rebuild the network from the file alone (the nanoGPT habit)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

DecoderNorm = Literal["channel", "batch", "layer"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the eight LIR networks.

    The defaults are the authors' (`lir`): width 64, 2 downsamplings, 4 residual blocks,
    3 discriminator scales.
    """

    name: str = "lir"
    #: channels of the first encoder conv; doubles at every downsampling
    width: int = 64
    #: stride-2 convolutions in the encoders (the restorer needs H, W padded to 2**n_downsample)
    n_downsample: int = 2
    #: residual blocks in each content encoder and in each decoder
    n_res_blocks: int = 4
    #: scales of the multi-scale PatchGAN image discriminators
    disc_scales: int = 3
    #: stride-2 conv layers per discriminator scale
    disc_layers: int = 4
    #: width of the first discriminator conv
    disc_width: int = 64
    #: D_X and D_Y read (image - its 3x3 mean) x this instead of the image (0: the image, as the
    #: authors' do). Camera noise of 1-2 levels in 255 is invisible to the authors' discriminators
    #: (held-out AUC 0.50 between noisy photos and their restorations, ``benchmarks/noise_gap.py``);
    #: on the high-pass at x20 the same discriminator tells them apart (0.92). Measured in stage 2
    #: it cost 1.7 dB on CC15: D_Y then has G_Y put grain back (README, "Round HP"), so it stays 0
    disc_high_pass: float = 0.0
    #: D_Y's gain where it differs from D_X's (None: ``disc_high_pass`` for both). 0 here with a gain
    #: for D_X lets G_X learn what D_X sees of the real noise while D_Y stays the authors'
    clean_disc_high_pass: float | None = None
    #: normalisation after the decoders' upsampling convs. The authors' UNIT LayerNorm ("layer")
    #: uses mean/std over the whole C x H x W map, so every output pixel would depend on the whole
    #: image and tiling could never equal whole-image restoration. "channel" (default) normalises
    #: over channels at each pixel: still per-sample like a LayerNorm, but local. "batch" is
    #: BatchNorm (local in eval mode). "layer" is kept only to measure the replacement against it.
    decoder_norm: DecoderNorm = "channel"
    #: colour channels of the images the networks see (gray images are replicated to RGB)
    image_channels: int = 3
    #: skip connections from the content encoders into G_Y, counted from full resolution up
    #: (0: the authors' network, every pixel through the H/4 bottleneck; 1: full resolution;
    #: 2: full and half). G_X keeps the authors' shape.
    skips: int = 0
    #: kernel of the decoders' upsampling convs (the authors use 5; 3 costs a third at full resolution)
    up_kernel: int = 5
    #: G_Y predicts a correction added to its input image instead of the image through tanh
    residual: bool = False
    #: G_X's residual blocks and upsampling kernel (None: ``n_res_blocks``; 5: the authors'). G_X is
    #: stage 2's cost (run three times per step: about 70 % of a LIR step with the authors' shape)
    #: and never ships; with --gx-noise-model it only learns what the fitted noise gets wrong
    gx_res_blocks: int | None = None
    gx_up_kernel: int = 5
    #: E_X reads a noise-level map beside the image (``level.py``): the level estimated from the
    #: image it is given, one constant channel, FFDNet-style (issue 17, item 2; measured against the
    #: blind restorer in the mix model's card)
    level_input: bool = False

    @property
    def latent_channels(self) -> int:
        return self.width * 2**self.n_downsample

    @property
    def size_multiple(self) -> int:
        return 2**self.n_downsample

    def restorer_shape(self) -> ModelConfig:
        """This config with what only training builds (G_X's and the discriminators' shapes) at their
        defaults: two configs with equal restorer shapes load each other's restorer files."""
        return dataclasses.replace(
            self, gx_res_blocks=None, gx_up_kernel=5, disc_scales=3, disc_layers=4, disc_width=self.width,
            disc_high_pass=0.0, clean_disc_high_pass=None,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)


MODEL_PRESETS: dict[str, ModelConfig] = {
    "lir": ModelConfig(),
    # CPU-sized: every network at half width (the restorer has 2.8 M parameters)
    "lir-lite": ModelConfig(name="lir-lite", width=32, disc_width=32),
    # lir-lite with a full-resolution path: skips at full and half resolution into G_Y, 3x3
    # upsampling convs (the 5x5 ones were 37 % of the restorer's multiply-adds), residual output
    # G_X lighter (2 residual blocks, 3x3 upsampling): 305 k multiply-adds per pixel instead of 714 k
    "lir-lite-unet": ModelConfig(
        name="lir-lite-unet", width=32, disc_width=32, skips=2, up_kernel=3, residual=True,
        gx_res_blocks=2, gx_up_kernel=3,
    ),  # fmt: skip
    # the same with one skip (full resolution) and the authors' 5x5 upsampling convs
    "lir-lite-skip": ModelConfig(name="lir-lite-skip", width=32, disc_width=32, skips=1, residual=True),
}


def model_preset(name: str, **overrides: Any) -> ModelConfig:
    """A preset with some fields replaced (``None`` values are ignored)."""
    if name not in MODEL_PRESETS:
        raise KeyError(f"unknown model config {name!r}; choose one of {sorted(MODEL_PRESETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(MODEL_PRESETS[name], **changes)


@dataclass(frozen=True)
class LossWeights:
    """Weights of every LIR loss term; the defaults are the authors'."""

    #: LSGAN on D_X(x_ba) and D_Y(x_ab), summed over the discriminator scales
    domain_adv: float = 1.0
    #: encoders pushed toward 0.5 on the representation discriminator
    repr_adv: float = 1.0
    #: L1 self-reconstruction, both domains
    self_rec: float = 10.0
    #: L1 cross-cycle reconstruction, both domains
    cycle: float = 10.0
    #: mean(z^2) on every latent (the authors' "KL")
    latent: float = 0.01
    #: L1 between Gaussian-blurred x_ab and x (and x_ba and y) at three scales
    background: float = 5.0
    #: MSE of instance-normalised VGG19 features; 0 disables it
    semantic: float = 1.0
    #: stage 2 only: stage 1's loss (the restorer on clean crops under the noise model) kept as an
    #: anchor, so the restorer cannot forget what stage 1 taught it; 0: off (the authors' LIR)
    anchor: float = 0.0


#: stage-1 steps when neither --steps, --warmup-steps nor --time is given: the measured recipe of
#: issue 20 (lir-lite-unet from the bundled model, 1,200 stage-1 steps at batch 16: 8 minutes on
#: two CPU cores, +0.65 dB over the bundled default on a microscope it had never seen)
DEFAULT_STAGE1_STEPS = 1200
#: stage 1's peak learning rate when --warmup-lr is not given (but see ``camera_teacher``)
DEFAULT_WARMUP_LR = 1e-3
#: --gx-residual: what the gate multiplies (``objectives.NoiseModelGX``)
GX_RESIDUALS = ("image", "difference", "noise-code")
#: ``init_weights`` values that are not paths: the bundled model chosen by the noise, or from scratch
INIT_AUTO = "auto"
INIT_NONE = "none"

#: TrainConfig fields that ``--resume`` lets change, and why each is safe: they decide how long the
#: run goes on (the stage boundary and the schedules stay the run's), where and how it runs (up to
#: rounding), how often it reports, or what it is scored on; none changes what a step learns
RESUME_SAFE_FIELDS = frozenset({
    "steps", "lir_steps", "time_budget",  # how long: the steps beyond stage 1 are LIR
    "workers", "device", "amp", "channels_last", "compile",  # where and how fast
    "checkpoint_every", "keep_checkpoints", "sample_every", "val_every", "log_every",  # reporting
    "val_noisy_dir", "val_clean_dir",  # what validation scores; training never sees them
    "vgg_weights",  # where the one VGG19 file is found (its hash is fixed)
    "out_dir", "resume", "init_weights",  # the run itself; a resumed run starts from its checkpoint
    "report_images",  # the report after the last step
})  # fmt: skip
#: what only stage 2 (LIR) reads: they may change on resume while the run has taken no stage-2
#: step (its LIR optimisers hold nothing yet), so one stage 1 can be tried with several stage 2s.
#: The loss weights are stage 2's too (stage 1 is its L1 alone).
STAGE2_FIELDS = frozenset({
    "lr", "repr_lr", "betas", "weight_decay", "repr_grad_clip", "repr_steps", "lr_step", "lr_gamma",
    "lir_freeze_steps", "gx_noise_model", "gx_residual", "gx_gate_scale", "gx_gate_ramp",
    "restorer_latent_noise", "lir_restorer_lr", "lir_gx_lr",
})  # fmt: skip
#: ModelConfig fields only stage 2 reads, free on the same terms: what D_X and D_Y read (a gain, no
#: weights), so a stage-1 checkpoint can go on with discriminators on the high-pass
STAGE2_MODEL_FIELDS = frozenset({"disc_high_pass", "clean_disc_high_pass"})


@dataclass
class TrainConfig:
    """Everything ``invrep train`` needs; built by the CLI, checked on construction (UsageError).

    Step counts left at None are resolved by the trainer (``resolve_steps``): stage 1 alone for
    ``DEFAULT_STAGE1_STEPS``, or as many steps as ``time_budget`` allows at the rate a short probe
    measures."""

    out_dir: str
    clean_dir: str
    noisy_dir: str | None = None
    #: e.g. "gaussian:25", "gaussian:5-50", "poisson:30"; splits clean_dir into two disjoint halves
    synthetic: str | None = None
    val_noisy_dir: str | None = None
    val_clean_dir: str | None = None
    model: ModelConfig = field(default_factory=lambda: MODEL_PRESETS["lir-lite-unet"])
    losses: LossWeights = field(default_factory=LossWeights)
    #: training iterations, both stages together (None: warmup_steps + lir_steps, or from time_budget)
    steps: int | None = None
    #: stage 1, the warm start: the first this many steps train E_X and G_Y alone on clean crops
    #: with noise drawn from a noise model of the noisy domain (the --synthetic spec, or fitted to
    #: the --noisy folder); LIR (stage 2) continues from them. 0: LIR from scratch.
    warmup_steps: int | None = None
    #: stage 2 (LIR) steps after stage 1. None: steps - warmup_steps when both are given, else 0:
    #: stage 2 is off by default, because it lowered every model it was measured on (README)
    lir_steps: int | None = None
    #: wall-clock budget in seconds for the whole command: sizes the steps from a measured probe
    #: (unless --steps or --warmup-steps gives them). On --resume the run's own budget continues to
    #: the steps it planned; another budget sizes what is left of the stage the run is in
    time_budget: float | None = None
    #: stage 1's peak learning rate (Adam, cosine decay to 1 % of it over the stage). None (the
    #: default): ``DEFAULT_WARMUP_LR``, or ``camera_teacher.CAMERA_WARMUP_LR`` for a camera folder
    #: taught by its bundled start (a resumed run keeps its own)
    warmup_lr: float | None = None
    #: at most this many images of the --noisy folder are used to fit the noise model
    noise_fit_images: int = 200
    #: fitted noise models: each crop's noise std is the fit's times a factor drawn log-uniformly
    #: in this range; None (``--noise-scale auto``): chosen from the fits, wide for blurred or JPEG'd
    #: noise whose level the estimator reads less surely, narrow for white noise
    #: (``noise.auto_level_range``)
    noise_scale: tuple[float, float] | None = None
    #: share of stage-1 crops made gray (the same value and the same noise in all three channels,
    #: as restore feeds a gray image): a model that only ever saw independent noise per channel
    #: leaves gray images' noise in (it reads noise from the channels' differences)
    gray_fraction: float = 0.25
    #: fitted models of JPEG files: share of stage-1 crops saved as JPEG at their image's quality
    jpeg_fraction: float = 0.5
    #: fitted models: correct each fit's level by synthesis through the estimator (noise.match_fit)
    match_levels: bool = True
    #: fitted models of white folders: correct the blur the estimator reads from texture by reading
    #: the fit back on the clean folder (``blur_readback.unblur_white``)
    blur_readback: bool = True
    #: stage 1 draws each crop's noise from one component of this mix, e.g.
    #: "clean=0.15,gaussian:0-50=0.3,poisson-gaussian:2-40=0.25,own=0.3" (``noise.parse_mix``;
    #: ``own`` is the --synthetic spec or the fit of --noisy). None: ``own`` alone
    noise_mix: str | None = None
    #: where E_X and G_Y start: "auto" (the bundled model whose noise is nearest the noisy
    #: domain's, when ``model`` is the bundled models' shape; else from scratch), "none" (from
    #: scratch) or a restorer file (fine-tuning; its model config is used)
    init_weights: str = INIT_AUTO
    #: stage 1: a restorer file whose outputs on the user's own noisy crops are the targets of a
    #: ``teacher_share`` of each batch (distillation): the real noise, which no fitted model draws
    #: exactly, next to the synthetic crops. None: every crop is synthetic (LIR's warm start)
    teacher: str | None = None
    #: share of each stage-1 batch taken from the noisy folder with the teacher's output as target
    teacher_share: float = 0.0
    #: with no --teacher, a colour camera folder's run that starts from a bundled model is taught by
    #: that start on ``camera_teacher.CAMERA_TEACHER_SHARE`` of each batch (``training/camera_teacher.py``)
    camera_teacher: bool = True
    #: the teacher's targets are the mean over this many orientations of each crop (restore's
    #: --self-ensemble: 1, 2, 4 or 8), closer to the clean image than one pass
    teacher_ensemble: int = 1
    #: stage 2: E_X and G_Y stay frozen (bit-identical) for this many steps after the boundary while
    #: the networks stage 2 adds learn, so the cross-cycle term never trains the restorer on images
    #: made by an untrained G_X
    lir_freeze_steps: int = 0
    #: stage 2: G_X begins as the noise model, x_ba = y + n_fit(y) + r with the learned residual r
    #: starting at zero (``objectives.NoiseModelGX``); False: the authors' G_X
    gx_noise_model: bool = False
    #: --gx-noise-model's residual r: "image" = gate x G_X's output (G_X is also the noisy decoder of the
    #: reconstructions, so that output is a whole image); "difference" = gate x (G_X's output - y), the
    #: part G_X adds to the clean image; "noise-code" = gate x (G_X's output - its output with the
    #: noise code zeroed), what G_X draws from the noise code (one more G_X forward in the generator
    #: step and one in the discriminator step)
    gx_residual: str = "image"
    #: the gate is this x a parameter that Adam moves by about ``lr`` a step: at 1 it opens at most
    #: 1e-4 a step, and G_X's adversarial gradient is scaled by the gate itself
    gx_gate_scale: float = 1.0
    #: > 0: the gate is not learnt but ramps from 0 to 1 over this many stage-2 steps, so G_X's
    #: residual gets D_X's gradient whatever D_X thinks of it at first (a learnt gate that D_X
    #: closes also closes G_X's only adversarial gradient)
    gx_gate_ramp: int = 0
    #: stage 2: LIR's unit Gaussian noise on the latents G_Y decodes (restored x_ab, y's
    #: self-reconstruction, the cross-cycle y). False: G_Y decodes codes as it does at inference;
    #: G_X's latents keep their noise
    restorer_latent_noise: bool = True
    #: stage 2's learning rate for E_X and G_Y (None: ``lr``, the authors'). Stage 1's cosine ends
    #: near 1e-5; stage 2 restarts the restorer at 1e-4 with no momentum (betas 0, 0.9)
    lir_restorer_lr: float | None = None
    #: stage 2's learning rate for E_X^N and G_X (None: ``lr``). Trained on reconstruction alone,
    #: G_X drew the banding of real noisy crops in 1,000 steps at 1e-3 and only 3.00 of 4.90 at 1e-4
    #: (README, Round NCODE)
    lir_gx_lr: float | None = None
    batch_size: int = 16
    crop_size: int = 64
    lr: float = 1e-4
    repr_lr: float = 5e-5
    betas: tuple[float, float] = (0.0, 0.9)
    weight_decay: float = 1e-4
    repr_grad_clip: float = 5.0
    #: representation-discriminator steps per iteration (the authors use 3)
    repr_steps: int = 3
    #: learning rate halves every this many steps
    lr_step: int = 100_000
    lr_gamma: float = 0.5
    #: decay of the exponential moving average of E_X and G_Y that ``restorer.safetensors`` ships
    #: (0: ship the raw weights). Warmed up as min(decay, (1 + step) / (10 + step)).
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    #: "auto" (bf16 on CUDA where supported, else fp16; none on CPU), "none", "bf16", "fp16"
    amp: str = "auto"
    workers: int = 2
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    sample_every: int = 1000
    val_every: int = 1000
    log_every: int = 10
    resume: bool = False
    vgg_weights: str | None = None
    channels_last: bool = False
    compile: bool = False
    #: at the end, score the start and the trained restorer on this many images of the noisy
    #: folder without a reference and save crops side by side (0: no report)
    report_images: int = 6

    def __post_init__(self) -> None:
        from invrep_cli.errors import UsageError

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise UsageError(message)

        for name, value, low in (
            ("--batch-size", self.batch_size, 1),
            ("--workers", self.workers, 0),
            ("--checkpoint-every", self.checkpoint_every, 1),
            ("--sample-every", self.sample_every, 1),
            ("--val-every", self.val_every, 1),
            ("--log-every", self.log_every, 1),
            ("--keep", self.keep_checkpoints, 1),
            ("--noise-fit-images", self.noise_fit_images, 1),
            ("--lir-freeze", self.lir_freeze_steps, 0),
            ("--report-images", self.report_images, 0),
            ("--steps", self.steps, 1),
            ("--warmup-steps", self.warmup_steps, 0),
            ("--lir-steps", self.lir_steps, 0),
            ("--gx-gate-ramp", self.gx_gate_ramp, 0),
        ):
            need(value is None or value >= low, f"{name} must be >= {low}, got {value}")
        need(self.lr > 0 and self.repr_lr > 0 and (self.warmup_lr is None or self.warmup_lr > 0),
             "learning rates must be positive")
        if self.noise_scale is not None:
            low, high = self.noise_scale
            need(0 < low <= high, f"--noise-scale must be LOW-HIGH with 0 < LOW <= HIGH, got {low:g}-{high:g}")
        need(0.0 <= self.gray_fraction <= 1.0, f"--gray-fraction must be in [0, 1], got {self.gray_fraction}")
        need(0.0 <= self.jpeg_fraction <= 1.0, f"--jpeg-fraction must be in [0, 1], got {self.jpeg_fraction}")
        need(
            self.gx_residual in GX_RESIDUALS,
            f"--gx-residual must be one of {', '.join(GX_RESIDUALS)}, got {self.gx_residual!r}",
        )
        need(
            self.lir_restorer_lr is None or self.lir_restorer_lr > 0,
            f"--lir-restorer-lr must be > 0, got {self.lir_restorer_lr}",
        )
        need(self.lir_gx_lr is None or self.lir_gx_lr > 0, f"--lir-gx-lr must be > 0, got {self.lir_gx_lr}")
        need(self.gx_gate_scale > 0, f"--gx-gate-scale must be > 0, got {self.gx_gate_scale}")
        need(0.0 <= self.ema_decay < 1.0, f"--ema must be in [0, 1), got {self.ema_decay}")
        need(0.0 <= self.teacher_share < 1.0, f"--teacher-share must be in [0, 1), got {self.teacher_share}")
        need(
            (self.teacher is None) == (self.teacher_share == 0.0),
            "--teacher and --teacher-share go together: a teacher file and a share of the batch above 0",
        )
        need(self.teacher is None or self.noisy_dir is not None, "--teacher restores crops of --noisy: give --noisy")
        need(
            self.teacher_ensemble in (1, 2, 4, 8),
            f"--teacher-ensemble must be 1, 2, 4 or 8, got {self.teacher_ensemble}",
        )
        for f in dataclasses.fields(LossWeights):
            need(getattr(self.losses, f.name) >= 0, f"loss weight {f.name} must be >= 0")
        need(
            not (self.resume and self.init_weights not in (INIT_AUTO, INIT_NONE)),
            "--init-weights starts a run; --resume continues one: give one of them",
        )
        if self.noise_mix is not None:
            from invrep_cli.noise import parse_mix

            try:
                parse_mix(self.noise_mix)
            except ValueError as exc:
                raise UsageError(f"--noise-mix {self.noise_mix!r}: {exc}") from None
        if self.time_budget is not None:
            need(self.time_budget > 0, f"--time must be positive, got {self.time_budget:g} s")
        if self.steps is not None and self.warmup_steps is not None:
            need(
                self.warmup_steps <= self.steps,
                f"--warmup-steps {self.warmup_steps} is more than --steps {self.steps}",
            )
            need(
                self.lir_steps is None or self.lir_steps == self.steps - self.warmup_steps,
                f"--steps {self.steps}, --warmup-steps {self.warmup_steps} and --lir-steps {self.lir_steps} "
                "disagree (steps = warmup steps + LIR steps): give two of them",
            )
        elif self.steps is not None and self.lir_steps is not None:
            need(self.lir_steps <= self.steps, f"--lir-steps {self.lir_steps} is more than --steps {self.steps}")

    @property
    def budget_sizes_steps(self) -> bool:
        """Whether ``time_budget`` decides the step count: only when neither --steps nor
        --warmup-steps gives it (a count given wins over the budget)."""
        return self.time_budget is not None and self.steps is None and self.warmup_steps is None

    def stage1_lr(self) -> float:
        """Stage 1's peak learning rate: --warmup-lr, else the default (``train`` sets the camera
        folder's on its copy of the config before the networks are built)."""
        return DEFAULT_WARMUP_LR if self.warmup_lr is None else self.warmup_lr

    def resolve_steps(self, stage1_default: int = DEFAULT_STAGE1_STEPS) -> tuple[int, int]:
        """(total steps, stage-1 steps) from what was given; ``stage1_default`` stands in for an
        unspecified stage 1 (the trainer passes the probe's count under ``time_budget``)."""
        lir = self.lir_steps
        if self.steps is not None and self.warmup_steps is not None:
            return self.steps, self.warmup_steps
        if self.steps is not None:
            return self.steps, self.steps - (lir or 0)
        warmup = self.warmup_steps if self.warmup_steps is not None else stage1_default
        return warmup + (lir or 0), warmup
