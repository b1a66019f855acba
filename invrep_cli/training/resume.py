"""``--resume`` continues a run as it was: every option that changes what the run learns must be
the checkpoint's. Those that may change are ``config.RESUME_SAFE_FIELDS`` (how long it goes on,
where it runs, how often it reports), and ``config.STAGE2_FIELDS`` and the loss weights while the
run has taken no stage-2 step (with ``config.STAGE2_MODEL_FIELDS``, what the discriminators read);
any other difference is refused with the list."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from invrep_cli.config import (
    INIT_AUTO,
    INIT_NONE,
    RESUME_SAFE_FIELDS,
    STAGE2_FIELDS,
    STAGE2_MODEL_FIELDS,
    LossWeights,
    ModelConfig,
    TrainConfig,
)
from invrep_cli.errors import UsageError

#: option names where they are not the field name with dashes
_OPTION = {
    "clean_dir": "--clean", "noisy_dir": "--noisy", "val_clean_dir": "--val-clean", "val_noisy_dir": "--val-noisy",
    "ema_decay": "--ema", "keep_checkpoints": "--keep",
    "time_budget": "--time", "lir_freeze_steps": "--lir-freeze", "match_levels": "--match-levels",
}  # fmt: skip
_MODEL_OPTION = {"name": "--config", "width": "--width", "n_res_blocks": "--res-blocks", "disc_scales": "--disc-scales",
                 "decoder_norm": "--decoder-norm", "disc_width": "--width",
                 "disc_high_pass": "--disc-high-pass", "clean_disc_high_pass": "--clean-disc-high-pass"}  # fmt: skip
#: resolved by the run, compared on their own (``warmup_steps``: the stage boundary)
_STEP_FIELDS = {"steps", "warmup_steps", "lir_steps"}
_DIR_FIELDS = {"clean_dir", "noisy_dir"}


def option_name(field: str) -> str:
    return _OPTION.get(field, "--" + field.replace("_", "-"))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(a)))
        except (TypeError, ValueError):
            return False
    return a == b


def _dir(value: Any) -> Any:
    return str(Path(value).resolve()) if value else value


def _default(f: dataclasses.Field) -> Any:
    """The value a run made before ``f`` existed went by (options are added with the old behaviour
    as their default)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise KeyError(f.name)  # a required field is in every checkpoint's train_config


def differences(
    cfg: TrainConfig, run: dict[str, Any], run_model: ModelConfig, before_stage2: bool = False
) -> list[str]:
    """``--option: the run has A, this command B`` for every run-changing difference between the
    command's config and the checkpoint's ``train_config`` (a field the checkpoint predates against
    its default); with ``before_stage2``, stage 2's options and loss weights may differ."""
    diffs: list[str] = []
    free = RESUME_SAFE_FIELDS | STAGE2_FIELDS if before_stage2 else RESUME_SAFE_FIELDS

    def add(option: str, was: Any, now: Any) -> None:
        diffs.append(f"{option}: the run has {was!r}, this command {now!r}")

    for f in dataclasses.fields(TrainConfig):
        name = f.name
        if name in free or name in _STEP_FIELDS or name in ("model", "losses") or not run:
            continue  # (a checkpoint without its options has nothing to compare)
        now, was = getattr(cfg, name), run[name] if name in run else _default(f)
        if name == "noise_scale" and now is None:
            continue  # auto: the run's spread, held by its saved noise model (runs before auto had 0.6-2.5)
        if name == "warmup_lr" and now is None:
            continue  # not given: the run's own rate, held by its saved optimiser
        if name in _DIR_FIELDS:
            now, was = _dir(now), _dir(was)
        if not _same(now, was):
            add(option_name(name), was, now)
    if cfg.warmup_steps is not None and "warmup_steps" in run and cfg.warmup_steps != run["warmup_steps"]:
        add("--warmup-steps", run["warmup_steps"], cfg.warmup_steps)
    if "losses" in run and not before_stage2:
        for f in dataclasses.fields(LossWeights):
            was = run["losses"].get(f.name, f.default)
            if not _same(getattr(cfg.losses, f.name), was):
                add(f"--w-{f.name.replace('_', '-')}", was, getattr(cfg.losses, f.name))
    # a run started from a restorer file took that file's networks, whatever --config said; the
    # discriminators' input is the command's all the same (the file holds no discriminator)
    from_file = run.get("init_weights") not in (None, INIT_AUTO, INIT_NONE)
    for f in dataclasses.fields(ModelConfig):
        was, now = getattr(run_model, f.name), getattr(cfg.model, f.name)
        if f.name in STAGE2_MODEL_FIELDS:
            skip = before_stage2
        else:  # --width sets disc_width too: one difference, said once
            skip = from_file or (f.name == "disc_width" and run_model.width != cfg.model.width)
        if not skip and was != now:
            add(_MODEL_OPTION.get(f.name, f"--config ({f.name})"), was, now)
    return diffs


def before_stage2(ckpt: dict[str, Any]) -> bool:
    """Whether the checkpoint is at or before the stage boundary: it has taken no stage-2 step."""
    return "warmup_steps" in ckpt and int(ckpt["step"]) <= int(ckpt["warmup_steps"])


def resumed_model_config(cfg: TrainConfig, ckpt: dict[str, Any]) -> ModelConfig:
    """The checkpoint's networks; before stage 2, with the command's ``STAGE2_MODEL_FIELDS``."""
    model = ModelConfig.from_dict(ckpt["model_config"])
    if not before_stage2(ckpt):
        return model
    return dataclasses.replace(model, **{name: getattr(cfg.model, name) for name in STAGE2_MODEL_FIELDS})


def check_resume(cfg: TrainConfig, ckpt: dict[str, Any]) -> None:
    """UsageError (exit 2) listing every run-changing option that differs from the checkpoint's."""
    run = ckpt.get("train_config") or {}
    run_model = ModelConfig.from_dict(ckpt["model_config"])
    diffs = differences(cfg, run, run_model, before_stage2(ckpt))
    if diffs:
        safe = ", ".join(sorted(option_name(n) for n in RESUME_SAFE_FIELDS if n not in ("resume", "out_dir")))
        raise UsageError(
            "--resume: this command changes the run, which would no longer continue as it was:\n  "
            + "\n  ".join(diffs)
            + f"\ngive the run's values (or start a new --out); options that may change on resume: {safe}"
        )
