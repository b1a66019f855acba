"""Train a LIR denoiser from unpaired noisy and clean folders.

Give --noisy DIR and --clean DIR (unpaired), or --clean DIR with --synthetic gaussian:25 |
gaussian:5-50 | poisson:PEAK to split the clean folder into two halves and make one half noisy on
the fly. With nothing else it runs the recipe that ships: lir-lite-unet started from the bundled
model nearest the folder's noise (--init-weights auto), 1200 stage-1 steps (or as many as --time
allows), no LIR stage 2 (--lir-steps N turns it on). Writes RUN_DIR/log.jsonl, checkpoints
(RUN_DIR/last.pt, RUN_DIR/checkpoints/), sample images, RUN_DIR/restorer.safetensors for
`invrep restore` and, at the end, a no-reference score of the start and trained models on the
noisy folder with RUN_DIR/report.png (noisy | start | trained crops). Ctrl-C saves a checkpoint;
--resume continues exactly (a changed option that would change the run is refused; --steps,
--lir-steps, --time, --workers, --device, --amp, --channels-last, --compile, the --*-every
intervals, --keep, --val-*, --vgg-weights and --report-images may change). Runs under
`torchrun --nproc_per_node N` for several GPUs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from invrep_cli.cli.common import DeviceOpt, JsonOpt, QuietOpt, console, console_err, core_errors, print_json
from invrep_cli.config import LossWeights, TrainConfig

# the defaults live in the config dataclasses; the options repeat them so --help can show them
_TC = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
_LW = LossWeights()

_DATA = "Data"
_MODEL = "Model"
_LOSS = "Loss weights"
_RUN = "Run"


def _opt(*names: str, help: str, panel: str = _RUN, **kw: Any) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel, **kw)


def train_command(
    out: Annotated[Path, _opt("--out", "-o", help="Run directory (log, checkpoints, samples, restorer).")],
    clean: Annotated[Path, _opt("--clean", help="Folder of clean images (read recursively).", panel=_DATA)],
    noisy: Annotated[
        Path | None, _opt("--noisy", help="Folder of noisy images, unpaired with --clean.", panel=_DATA)
    ] = None,
    synthetic: Annotated[
        str | None,
        _opt(
            "--synthetic",
            help="Make the noisy domain from half of --clean: gaussian:SIGMA, gaussian:LOW-HIGH (blind) or "
            "poisson:PEAK (sigma on the 0-255 scale).",
            panel=_DATA,
        ),
    ] = None,
    val_noisy: Annotated[
        Path | None, _opt("--val-noisy", help="Validation noisy images, paired with --val-clean by name.", panel=_DATA)
    ] = None,
    val_clean: Annotated[
        Path | None,
        _opt("--val-clean", help="Validation clean images (alone: noise from --synthetic, fixed seed).", panel=_DATA),
    ] = None,
    crop_size: Annotated[int, _opt("--crop-size", help="Random square crop size.", panel=_DATA)] = _TC["crop_size"],
    workers: Annotated[
        int, _opt("--workers", help="DataLoader worker processes (0: load in the main process).", panel=_DATA)
    ] = _TC["workers"],
    config: Annotated[
        str,
        _opt(
            "--config",
            help="Model preset: lir-lite-unet (default, the shipped models: lir-lite with skips at full and "
            "half resolution and a residual output), lir (the paper's), lir-lite (half width), lir-lite-skip.",
            panel=_MODEL,
        ),
    ] = "lir-lite-unet",
    width: Annotated[
        int | None, _opt("--width", help="Override the first conv width (generators and discriminators).", panel=_MODEL)
    ] = None,
    res_blocks: Annotated[
        int | None, _opt("--res-blocks", help="Override residual blocks per encoder/decoder.", panel=_MODEL)
    ] = None,
    disc_scales: Annotated[
        int | None, _opt("--disc-scales", help="Override discriminator scales.", panel=_MODEL)
    ] = None,
    disc_high_pass: Annotated[
        float | None,
        _opt(
            "--disc-high-pass",
            help="Stage 2: D_X and D_Y read (image - its 3x3 mean) x this (0: the image, the authors'). They "
            "then see faint camera noise, and stage 2 measured worse with it (README, Round HP).",
            panel=_MODEL,
        ),
    ] = None,
    clean_disc_high_pass: Annotated[
        float | None,
        _opt("--clean-disc-high-pass", help="D_Y's --disc-high-pass where it differs from D_X's.", panel=_MODEL),
    ] = None,
    decoder_norm: Annotated[
        str | None,
        _opt("--decoder-norm", help="channel (default, tile-exact) | batch | layer (the authors').", panel=_MODEL),
    ] = None,
    level_input: Annotated[
        bool,
        _opt(
            "--level-input",
            help="Conditioned restorer: E_X also reads each image's estimated noise level (a constant map, "
            "FFDNet-style). Off: at equal cost it measured no better than the blind restorer (default model's card).",
            panel=_MODEL,
        ),
    ] = False,
    steps: Annotated[
        int | None,
        _opt(
            "--steps",
            help="Training iterations, both stages together; wins over --time. Default: --warmup-steps + "
            "--lir-steps, i.e. 1200 stage-1 steps alone. May change on --resume (steps past stage 1 are LIR).",
        ),
    ] = None,
    time_budget: Annotated[
        str | None,
        _opt(
            "--time",
            metavar="DURATION",
            help="Wall-clock budget, e.g. 45s, 20m, 2h: a few steps are timed first (then undone), the step "
            "count is sized to fit and the ETA printed before the first step (--steps or --warmup-steps win "
            "over it). On --resume the run's own budget continues to its plan; another sizes what is left.",
        ),
    ] = None,
    warmup_steps: Annotated[
        int | None,
        _opt(
            "--warmup-steps",
            help="Stage 1 (no pairs): N steps train E_X and G_Y on clean crops with noise from a noise model of "
            "the noisy domain (the --synthetic spec, or fitted to --noisy). Default 1200 (or what --time allows); "
            "0: LIR from scratch.",
        ),
    ] = None,
    lir_steps: Annotated[
        int | None,
        _opt(
            "--lir-steps",
            help="Stage 2 (LIR) steps after stage 1. Default 0: stage 2 lowered every model it was measured on "
            "(README). May change on --resume.",
        ),
    ] = None,
    lir_freeze: Annotated[
        int,
        _opt(
            "--lir-freeze",
            help="Stage 2's first N steps leave E_X and G_Y untouched while the networks stage 2 adds learn.",
        ),
    ] = _TC["lir_freeze_steps"],
    gx_noise_model: Annotated[
        bool,
        _opt(
            "--gx-noise-model/--gx-authors",
            help="Stage 2: G_X begins as the noise model (y + fitted noise + a learned residual that starts at "
            "zero) instead of the authors' decoder alone.",
        ),
    ] = _TC["gx_noise_model"],
    gx_residual: Annotated[
        str,
        _opt(
            "--gx-residual",
            help="With --gx-noise-model: the gate multiplies G_X's output (image), G_X's output less the clean "
            "image (difference) or what G_X's noise code changes in its output (noise-code).",
        ),
    ] = _TC["gx_residual"],
    gx_gate_scale: Annotated[
        float,
        _opt("--gx-gate-scale", help="With --gx-noise-model: the residual's gate opens this many times faster."),
    ] = _TC["gx_gate_scale"],
    gx_gate_ramp: Annotated[
        int,
        _opt(
            "--gx-gate-ramp",
            help="With --gx-noise-model: the gate is not learnt but opens from 0 to 1 over N stage-2 steps "
            "(0: learnt).",
        ),
    ] = _TC["gx_gate_ramp"],
    restorer_latent_noise: Annotated[
        bool,
        _opt(
            "--restorer-latent-noise/--no-restorer-latent-noise",
            help="Stage 2: LIR's unit noise on the latents G_Y decodes (the authors'); off: G_Y decodes them as at "
            "inference.",
        ),
    ] = _TC["restorer_latent_noise"],
    lir_restorer_lr: Annotated[
        float | None,
        _opt("--lir-restorer-lr", help="Stage 2's learning rate for E_X and G_Y (default: --lr, the authors')."),
    ] = _TC["lir_restorer_lr"],
    lir_gx_lr: Annotated[
        float | None,
        _opt("--lir-gx-lr", help="Stage 2's learning rate for E_X^N and G_X, the noise generator (default: --lr)."),
    ] = _TC["lir_gx_lr"],
    warmup_lr: Annotated[
        float | None,
        _opt(
            "--warmup-lr",
            help="Stage 1 peak learning rate (cosine decay). Default 1e-3; 1e-4 on a camera folder taught "
            "by its start (--camera-teacher); a resumed run keeps its own.",
        ),
    ] = _TC["warmup_lr"],
    gray_fraction: Annotated[
        float,
        _opt(
            "--gray-fraction",
            help="Share of stage-1 crops made gray (one channel and its noise, replicated), as restore feeds gray "
            "images.",
        ),
    ] = _TC["gray_fraction"],
    noise_scale: Annotated[
        str,
        _opt(
            "--noise-scale",
            help="Fitted noise models: scale each crop's noise std by a factor drawn log-uniformly in LOW-HIGH; "
            "auto: 0.8-1.25 for white noise, 0.6-2.5 for blurred or JPEG'd (camera) noise.",
            panel=_DATA,
        ),
    ] = "auto",
    jpeg_fraction: Annotated[
        float,
        _opt(
            "--jpeg-fraction",
            help="Fitted on JPEG files: share of stage-1 crops saved as JPEG at the quality read from their image's "
            "quantisation tables (the rest keep the noise as it was before compression).",
            panel=_DATA,
        ),
    ] = _TC["jpeg_fraction"],
    noise_mix: Annotated[
        str | None,
        _opt(
            "--noise-mix",
            help="Stage 1 draws each crop's noise from one component, by share: clean (no noise), own (the "
            "--synthetic spec or the fit of --noisy) or a spec, e.g. clean=0.15,gaussian:0-50=0.3,own=0.55.",
            panel=_DATA,
        ),
    ] = None,
    match_levels: Annotated[
        bool,
        _opt(
            "--match-levels/--no-match-levels",
            help="Correct each fitted noise level by synthesis: draw it onto the image's own block planes, save as "
            "the file was saved, and read it back with the same estimator.",
            panel=_DATA,
        ),
    ] = _TC["match_levels"],
    blur_readback: Annotated[
        bool,
        _opt(
            "--blur-readback/--no-blur-readback",
            help="White noise folders: correct the fitted blur, which texture inflates, by drawing the fit onto "
            "clean-folder images and reading it back with the same estimator.",
            panel=_DATA,
        ),
    ] = _TC["blur_readback"],
    init_weights: Annotated[
        str,
        _opt(
            "--init-weights",
            metavar="auto|none|PATH",
            help="Where E_X and G_Y start. auto (default): the bundled model whose recorded noise is nearest the "
            "noise of the noisy domain (blur, channel correlation, JPEG; ties and doubt: the default "
            "lir-unet-mix), when --config is the bundled models' lir-lite-unet; else random weights. none: "
            "random weights. PATH: a restorer (.safetensors or a checkpoint; its model config is used).",
            panel=_MODEL,
        ),
    ] = _TC["init_weights"],
    teacher: Annotated[
        Path | None,
        _opt(
            "--teacher",
            metavar="PATH",
            help="Stage 1 also learns from the real noise: a --teacher-share of each batch is crops of --noisy, "
            "with this restorer's outputs on them as targets (e.g. a model trained for this noise alone).",
            panel=_DATA,
        ),
    ] = None,
    teacher_share: Annotated[
        float,
        _opt("--teacher-share", help="Share of each stage-1 batch taught by --teacher (0-1, below 1).", panel=_DATA),
    ] = _TC["teacher_share"],
    camera_teacher: Annotated[
        bool,
        _opt(
            "--camera-teacher/--no-camera-teacher",
            help="With no --teacher: a colour camera folder (noise fitted blurred or JPEG'd) whose run starts from "
            "a bundled model is taught by that model on real noisy crops, a quarter of each stage-1 batch.",
            panel=_DATA,
        ),
    ] = _TC["camera_teacher"],
    teacher_ensemble: Annotated[
        int,
        _opt(
            "--teacher-ensemble",
            help="The teacher's targets are its mean over N orientations of each crop (1, 2, 4 or 8; as restore's "
            "--self-ensemble).",
            panel=_DATA,
        ),
    ] = _TC["teacher_ensemble"],
    batch_size: Annotated[int, _opt("--batch-size", "-b", help="Images per domain per step (per process).")] = _TC[
        "batch_size"
    ],
    lr: Annotated[float, _opt("--lr", help="Adam learning rate of generators and image discriminators.")] = _TC["lr"],
    repr_lr: Annotated[float, _opt("--repr-lr", help="Adam learning rate of the representation discriminator.")] = _TC[
        "repr_lr"
    ],
    lr_step: Annotated[int, _opt("--lr-step", help="Halve the learning rates every this many steps.")] = _TC["lr_step"],
    ema: Annotated[
        float,
        _opt(
            "--ema",
            help="Decay of the moving average of E_X and G_Y that the restorer ships (0: raw weights).",
        ),
    ] = _TC["ema_decay"],
    seed: Annotated[int, _opt("--seed", help="Seed of the data split, crops, noise and initialisation.")] = _TC["seed"],
    device: DeviceOpt = "auto",
    resume: Annotated[
        bool,
        _opt(
            "--resume",
            help="Continue the run in --out from its last.pt. Every option that changes what it learns must be "
            "the run's (a change is refused, exit 2, with the list); these may change: --steps, --lir-steps, "
            "--time, --workers, --device, --amp, --channels-last, --compile, the --*-every intervals, --keep, "
            "--val-noisy/--val-clean, --vgg-weights, --report-images.",
        ),
    ] = False,
    w_domain_adv: Annotated[
        float, _opt("--w-domain-adv", help="Domain adversarial weight.", panel=_LOSS)
    ] = _LW.domain_adv,
    w_repr_adv: Annotated[
        float, _opt("--w-repr-adv", help="Representation adversarial weight.", panel=_LOSS)
    ] = _LW.repr_adv,
    w_self_rec: Annotated[
        float, _opt("--w-self-rec", help="Self-reconstruction L1 weight.", panel=_LOSS)
    ] = _LW.self_rec,
    w_cycle: Annotated[float, _opt("--w-cycle", help="Cross-cycle L1 weight.", panel=_LOSS)] = _LW.cycle,
    w_latent: Annotated[float, _opt("--w-latent", help="mean(z^2) latent penalty weight.", panel=_LOSS)] = _LW.latent,
    w_background: Annotated[
        float, _opt("--w-background", help="Background (blurred L1) weight.", panel=_LOSS)
    ] = _LW.background,
    w_semantic: Annotated[
        float, _opt("--w-semantic", help="Semantic (VGG19 conv4_1) weight; 0 disables.", panel=_LOSS)
    ] = _LW.semantic,
    w_anchor: Annotated[
        float, _opt("--w-anchor", help="Stage 2: weight of stage 1's loss kept as an anchor; 0: off.", panel=_LOSS)
    ] = _LW.anchor,
    vgg_weights: Annotated[
        Path | None,
        _opt(
            "--vgg-weights",
            help="torchvision vgg19-dcbb9e9d.pth (else $INVREP_VGG_WEIGHTS, the cache, a download).",
            panel=_LOSS,
        ),
    ] = None,
    checkpoint_every: Annotated[int, _opt("--checkpoint-every", help="Write a checkpoint every N steps.")] = _TC[
        "checkpoint_every"
    ],
    keep: Annotated[int, _opt("--keep", help="Checkpoints kept in RUN_DIR/checkpoints (plus last.pt).")] = _TC[
        "keep_checkpoints"
    ],
    sample_every: Annotated[int, _opt("--sample-every", help="Save sample restorations every N steps.")] = _TC[
        "sample_every"
    ],
    val_every: Annotated[int, _opt("--val-every", help="Validate every N steps (with validation images).")] = _TC[
        "val_every"
    ],
    log_every: Annotated[int, _opt("--log-every", help="Write losses to log.jsonl every N steps.")] = _TC["log_every"],
    amp: Annotated[str, _opt("--amp", help="auto (bf16/fp16 on CUDA, none on CPU) | none | bf16 | fp16.")] = "auto",
    channels_last: Annotated[
        bool, _opt("--channels-last", help="Use channels-last memory format (faster on GPUs).")
    ] = False,
    compile: Annotated[bool, _opt("--compile", help="torch.compile the networks.")] = False,
    report_images: Annotated[
        int,
        _opt(
            "--report-images",
            help="At the end, score the start and trained models on N noisy images (no reference) and write "
            "RUN_DIR/report.png; 0: no report.",
        ),
    ] = _TC["report_images"],
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    options = {k: v for k, v in locals().items() if k not in ("json_out", "quiet")}
    from invrep_cli.distenv import dist_from_env

    rank = dist_from_env().rank
    with core_errors():
        cfg = _config(**options)
        show = rank == 0 and not quiet and not json_out
        with _Progress(show, quiet or rank != 0) as progress:
            from invrep_cli.training import train

            result = train(cfg, progress.handle)
    if rank != 0:
        raise typer.Exit(130 if result.interrupted else 0)
    if json_out:
        print_json(result.to_dict())
    elif not quiet:
        _print_result(result)
    if result.interrupted:
        raise typer.Exit(130)


def _config(
    *, out: Path, clean: Path, noisy: Path | None, synthetic: str | None, val_noisy: Path | None,
    val_clean: Path | None, config: str, width: int | None, res_blocks: int | None, disc_scales: int | None,
    disc_high_pass: float | None, clean_disc_high_pass: float | None, decoder_norm: str | None,
    level_input: bool, noise_scale: str, time_budget: str | None, init_weights: str, teacher: Path | None,
    vgg_weights: Path | None, ema: float, keep: int, lir_freeze: int,
    w_domain_adv: float, w_repr_adv: float, w_self_rec: float, w_cycle: float, w_latent: float,
    w_background: float, w_semantic: float, w_anchor: float, **rest: Any,
) -> TrainConfig:
    """The options as a TrainConfig (which checks itself); UsageError on a bad value."""
    from invrep_cli.config import model_preset
    from invrep_cli.training.budget import parse_duration

    if decoder_norm is not None and decoder_norm not in ("channel", "batch", "layer"):
        raise _usage(f"--decoder-norm {decoder_norm!r}: choose channel, batch or layer")
    for name, value in (("--width", width), ("--res-blocks", res_blocks), ("--disc-scales", disc_scales)):
        if value is not None and value < 1:
            raise _usage(f"{name} must be >= 1, got {value}")
    for name, gain in (("--disc-high-pass", disc_high_pass), ("--clean-disc-high-pass", clean_disc_high_pass)):
        if gain is not None and not (0.0 <= gain < float("inf")):
            raise _usage(f"{name} must be a finite number >= 0, got {gain}")
    try:
        model = model_preset(
            config, width=width, disc_width=width, n_res_blocks=res_blocks, disc_scales=disc_scales,
            disc_high_pass=disc_high_pass, clean_disc_high_pass=clean_disc_high_pass, decoder_norm=decoder_norm,
            level_input=level_input or None,
        )
    except KeyError as exc:
        raise _usage(str(exc.args[0])) from None
    losses = LossWeights(
        domain_adv=w_domain_adv, repr_adv=w_repr_adv, self_rec=w_self_rec, cycle=w_cycle, latent=w_latent,
        background=w_background, semantic=w_semantic, anchor=w_anchor,
    )
    return TrainConfig(
        out_dir=str(out),
        clean_dir=str(clean),
        noisy_dir=str(noisy) if noisy else None,
        synthetic=synthetic,
        val_noisy_dir=str(val_noisy) if val_noisy else None,
        val_clean_dir=str(val_clean) if val_clean else None,
        model=model,
        losses=losses,
        noise_scale=_scale_range(noise_scale),
        time_budget=parse_duration(time_budget) if time_budget is not None else None,
        init_weights=init_weights,
        teacher=str(teacher) if teacher else None,
        vgg_weights=str(vgg_weights) if vgg_weights else None,
        ema_decay=ema,
        keep_checkpoints=keep,
        lir_freeze_steps=lir_freeze,
        **rest,
    )  # fmt: skip


def _print_result(result: Any) -> None:
    line = f"step {result.step}/{result.steps}  checkpoint {result.checkpoint}  restorer {result.restorer}"
    console.print(
        ("[yellow]interrupted[/yellow]; " if result.interrupted else "[green]done[/green]: ") + line,
        highlight=False,
    )
    report = result.report
    if report:
        if report["trained_estimated_psnr"] is None:
            console.print(f"on {report['images']} noisy image(s), no no-reference score (see the warning above); "
                          f"crops noisy | start | trained in {report['picture']}", highlight=False, soft_wrap=True)
            return
        start = report["start_estimated_psnr"]
        versus = f"{report['start']} {start:.2f} dB -> " if start is not None else ""
        if report.get("stage1_estimated_psnr") is not None:
            versus += f"stage 1 {report['stage1_estimated_psnr']:.2f} dB -> stage 2 "
        borrowed = report.get("folder_fit_images", 0)
        under = f"; {borrowed} under the folder's fit, their own unmeasurable" if borrowed else ""
        console.print(
            f"on {report['images']} noisy image(s){under}, no reference (SURE under the fitted noise; ranks models, "
            f"not a PSNR against clean images): {versus}trained {report['trained_estimated_psnr']:.2f} dB; "
            f"crops noisy | start | trained in {report['picture']}",
            highlight=False,
            soft_wrap=True,
        )


def _scale_range(text: str) -> tuple[float, float] | None:
    if text == "auto":
        return None
    try:
        low, _, high = text.partition("-")
        return float(low), float(high or low)
    except ValueError:
        raise _usage(f"--noise-scale {text!r}: expected auto or LOW-HIGH, e.g. 0.6-2.5") from None


def _usage(message: str) -> Exception:
    from invrep_cli.errors import UsageError

    return UsageError(message)


#: (log key, short label) of the losses shown under the progress bar
_MAIN_LOSSES = (
    ("warmup_l1", "L1"),
    ("g_total", "G"),
    ("rec_noisy", "recX"),
    ("rec_clean", "recY"),
    ("cycle_noisy", "cycX"),
    ("adv_clean", "advY"),
    ("d_clean", "DY"),
    ("d_noisy", "DX"),
    ("d_repr", "DR"),
    ("semantic", "sem"),
)


def _make_progress() -> Any:
    """A Rich progress bar (steps, steps/s, elapsed, ETA) with one line of losses under it."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class TrainProgress(Progress):
        losses_line = ""

        def get_renderables(self) -> Any:
            yield self.make_tasks_table(self.tasks)
            if self.losses_line:
                yield Text(self.losses_line, overflow="ellipsis", no_wrap=True, style="dim")

    return TrainProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=None),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console_err,
        expand=False,
    )


class _Progress:
    """Renders trainer events: a Rich bar with steps/s, ETA and the main losses; warnings on stderr."""

    def __init__(self, show: bool, quiet: bool) -> None:
        self.show = show
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None
        self.download_task: Any = None
        self.avg_step_time: float | None = None
        self.last_status = float("-inf")

    def __enter__(self) -> _Progress:
        if self.show:
            self.bar = _make_progress()
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)

    def _plain_status(self, event: dict[str, Any], rate: float) -> None:
        """Without a terminal the bar cannot redraw: a status line every 30 s (and at the end) instead."""
        import time

        now = time.monotonic()
        last = event["step"] >= event["steps"]
        if not last and now - self.last_status < 30:
            return
        self.last_status = now
        left = (event["steps"] - event["step"]) / rate if rate > 0 else 0.0
        eta = f"{int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"
        self.bar.console.print(
            f"step {event['step']}/{event['steps']}  {rate:.3f} step/s  ETA {eta}  {self.bar.losses_line}",
            highlight=False,
            soft_wrap=True,
        )

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "warning":
            if not self.quiet:
                console_err.print(f"[yellow]warning:[/yellow] {event['message']}", highlight=False, soft_wrap=True)
            return
        if self.bar is None:
            return
        if kind == "download":
            if self.download_task is None:
                self.download_task = self.bar.add_task(event["what"], total=event["total"], rate="")
            self.bar.update(self.download_task, completed=event["done"], total=event["total"])
        elif kind in ("start", "resume"):
            what = f"resuming at step {event['step']}:" if kind == "resume" else "training"
            semantic = "on" if event["semantic_enabled"] else "[yellow]OFF[/yellow]"
            if event["semantic_note"].startswith("not used"):
                semantic = "not used (no stage 2)"
            self.bar.console.print(
                f"{what} {event['model_config']['name']} on {event['device']}, amp {event['amp']}, "
                f"{event['world_size']} process(es); {event['data']}; semantic loss {semantic}; "
                f"stage 1: {event['warmup_steps']} steps (peak rate {event['warmup_lr']:g}), stage 2 (LIR): "
                f"{event['lir_steps']} steps; start: {event['init_weights'] or 'checkpoint'}"
                + (f"; teacher: {event['teacher']}" if event["teacher"] else ""),
                highlight=False,
                soft_wrap=True,
            )
            self.task = self.bar.add_task("train", total=event["steps"], completed=event["step"], rate="")
        elif kind == "step" and self.task is not None:
            dt = float(event["step_time"])
            # a moving average: single steps jitter with data loading and checkpoints
            self.avg_step_time = dt if self.avg_step_time is None else 0.9 * self.avg_step_time + 0.1 * dt
            rate = 1.0 / self.avg_step_time if self.avg_step_time > 0 else 0.0
            if "losses" in event:
                losses = event["losses"]
                self.bar.losses_line = "  ".join(f"{label} {losses[k]:.3f}" for k, label in _MAIN_LOSSES if k in losses)
            self.bar.update(self.task, completed=event["step"], rate=f"{rate:.2f} step/s")
            if not self.bar.console.is_terminal:
                self._plain_status(event, rate)
        elif kind == "plan":
            stage2 = f", stage 2 {event['stage2_step_s']:.2f} s/step" if event["stage2_step_s"] else ""
            stage1 = f"stage 1 {event['stage1_step_s']:.3f} s/step" if event["stage1_step_s"] else ""
            self.bar.console.print(
                f"--time: probe {stage1}{stage2} (set-up {event['setup_and_probe_s']:.0f} s) -> {event['steps']} steps "
                f"({event['warmup_steps']} stage 1); ETA {event['eta']}",
                highlight=False,
                soft_wrap=True,
            )
        elif kind == "noise_model":
            self.bar.console.print(f"stage 1 noise model: {event['summary']}", highlight=False, soft_wrap=True)
        elif kind == "val":
            self.bar.console.print(f"step {event['step']}: val PSNR {event['psnr']:.2f} dB, SSIM {event['ssim']:.4f}")
        elif kind == "checkpoint":
            self.bar.console.print(f"step {event['step']}: checkpoint {event['path']}", highlight=False)
