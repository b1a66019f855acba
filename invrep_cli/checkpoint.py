"""Restorer weights files and the restorer view of training checkpoints.

Two formats are read, both without executing code:
- ``*.safetensors``: the shipped restorer (E_X and G_Y only), model config and provenance in the
  header metadata (all values are strings, as safetensors requires);
- ``*.pt``: an ``invrep train`` checkpoint, read with ``torch.load(weights_only=True)``; its
  ``networks`` entry holds every network's state dict and ``model_config`` the config.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from invrep_cli import __version__
from invrep_cli.config import ModelConfig
from invrep_cli.errors import WeightsError
from invrep_cli.fsutil import atomic_path, sha256_file
from invrep_cli.metadata import decode_metadata
from invrep_cli.models import Restorer

RESTORER_FORMAT = "invrep-restorer/1"
TRAIN_CHECKPOINT_FORMAT = "invrep-train-checkpoint/1"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
#: header key of the digest of every tensor (name, dtype, shape, bytes); files saved before it
#: existed have none and load unchecked
TENSORS_DIGEST_KEY = "tensors_sha256"


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor in name order: its name, dtype, shape and raw bytes.

    The safetensors header has its own length check but nothing guards the data bytes; this does.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_restorer(
    restorer: Restorer, path: str | os.PathLike[str], meta: dict[str, Any] | None = None, half: bool = False
) -> Path:
    """Write E_X and G_Y as safetensors (atomically). ``half`` stores fp16 (restore casts back)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in restorer.state_dict().items()}
    if half:
        tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}
    header = {
        "format": RESTORER_FORMAT,
        "model_config": json.dumps(restorer.config.to_dict()),
        "invrep_version": __version__,
    }
    for key, value in (meta or {}).items():
        header[key] = value if isinstance(value, str) else json.dumps(value)
    header[TENSORS_DIGEST_KEY] = tensors_digest(tensors)  # of what is stored, never a caller's copy
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def write_train_checkpoint(run_dir: str | os.PathLike[str], state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` (``Trainer.checkpoint_dict()``) as RUN_DIR/checkpoints/step_NNNNNNNN.pt and
    RUN_DIR/last.pt, each atomically, and keep the newest ``keep`` step files. Returns the step file."""
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"step_{int(state['step']):08d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    with atomic_path(run_dir / LAST_CHECKPOINT) as tmp:
        shutil.copyfile(path, tmp)
    existing = sorted(ckpt_dir.glob("step_*.pt"))
    for old in existing[: max(0, len(existing) - keep)]:
        old.unlink(missing_ok=True)
    return path


def read_train_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An ``invrep train`` checkpoint, read without executing code, or WeightsError."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # PyTorch's text suggests weights_only=False, i.e. running the file's code: never say that
        raise WeightsError(
            f"{path}: not a safe invrep checkpoint (it needs arbitrary Python objects unpickled, "
            "which invrep refuses)"
        ) from exc
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise WeightsError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {first_line})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != TRAIN_CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: not an invrep training checkpoint")
    return ckpt


def load_restorer(path: str | os.PathLike[str], ema: bool = True) -> tuple[Restorer, dict[str, Any]]:
    """Rebuild the restorer from a weights file alone; returns (restorer in eval mode, metadata).

    From a training checkpoint it takes the moving average of E_X and G_Y when the run kept one
    (``ema=False``: the raw weights); ``meta["ema_decay"]`` says which (0.0: raw).

    Metadata always has ``model_config`` (dict) and ``sha256`` of the file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                raw_meta = f.metadata() or {}
                meta = decode_metadata(raw_meta)
                state = {k: f.get_tensor(k) for k in f.keys()}
            if meta.get("format") != RESTORER_FORMAT:
                raise WeightsError(f"{path}: not an invrep restorer file (format {meta.get('format')!r})")
            expected = raw_meta.get(TENSORS_DIGEST_KEY)
            if expected is not None and tensors_digest(state) != expected:
                raise WeightsError(
                    f"{path}: the weights data is corrupt (its tensors do not match the digest stored in "
                    "the file); download or copy it again"
                )
        else:
            ckpt = read_train_checkpoint(path)
            if ema and ckpt.get("ema"):
                state = dict(ckpt["ema"])
                meta = {"ema_decay": ckpt.get("ema_decay")}
            else:
                nets = ckpt["networks"]
                state = {f"noisy_encoder.{k}": v for k, v in nets["noisy_encoder"].items()}
                state.update({f"clean_decoder.{k}": v for k, v in nets["clean_decoder"].items()})
                meta = {"ema_decay": 0.0}
            meta.update({"model_config": ckpt["model_config"], "step": ckpt.get("step")})
        config = ModelConfig.from_dict(meta["model_config"])
        restorer = Restorer(config)
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
        restorer.load_state_dict(state)
    except WeightsError:
        raise
    except Exception as exc:  # corrupt file, wrong keys, bad config: one clear message
        raise WeightsError(f"{path}: cannot load weights ({type(exc).__name__}: {exc})") from exc
    meta["sha256"] = sha256_file(path)
    return restorer.eval(), meta
