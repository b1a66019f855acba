"""The run folder: what a training run leaves on disk, written by rank 0 only.

Layout::

    RUN_DIR/log.jsonl                  one JSON object per line: start/resume, step (every loss
                                       term, lr, step time), val, checkpoint, report, done
    RUN_DIR/checkpoints/step_NNNNNNNN.pt   the last ``keep_checkpoints`` checkpoints
    RUN_DIR/last.pt                    the newest checkpoint (what --resume reads)
    RUN_DIR/restorer.safetensors       E_X + G_Y of the newest checkpoint, for ``invrep restore``:
                                       their exponential moving average (``ema_decay``, as
                                       Real-ESRGAN ships ``params_ema``), else the raw weights
    RUN_DIR/restorer-stage1.safetensors  what stage 1 gave, kept beside what stage 2 makes of it
    RUN_DIR/restorer-stage2.safetensors  what stage 2 made, when the final report scored it below
                                       stage 1 (restorer.safetensors is then stage 1's)
    RUN_DIR/samples/step_NNNNNNNN.png  rows: noisy x, restored x_ab, clean y, synthetic noisy x_ba
    RUN_DIR/report.png                 crops of the noisy folder: noisy | start model | trained
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from invrep_cli.checkpoint import LAST_CHECKPOINT, read_train_checkpoint, save_restorer, write_train_checkpoint
from invrep_cli.errors import UsageError
from invrep_cli.fsutil import atomic_path
from invrep_cli.models import Restorer

RESTORER_FILE = "restorer.safetensors"
STAGE1_RESTORER_FILE = "restorer-stage1.safetensors"
STAGE2_RESTORER_FILE = "restorer-stage2.safetensors"
LOG_FILE = "log.jsonl"
SAMPLES_DIR = "samples"
REPORT_FILE = "report.png"


def to_image_uint8(x: torch.Tensor) -> np.ndarray:
    """3 x H x W in [-1, 1] -> H x W x 3 uint8."""
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()
    return arr.transpose(1, 2, 0)


def save_png(path: Path, image: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path


class RunFolder:
    """RUN_DIR of one run. ``writer`` is False on every rank but 0: they write nothing."""

    def __init__(self, path: str | Path, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer
        self._log: Any = None

    @property
    def last_checkpoint(self) -> Path:
        return self.path / LAST_CHECKPOINT

    @property
    def restorer_file(self) -> Path:
        return self.path / RESTORER_FILE

    def checkpoint_for_resume(self, resume: bool) -> dict[str, Any] | None:
        """The checkpoint --resume continues from; None for a new run. UsageError when the folder
        holds a run and --resume was not given, or --resume finds nothing."""
        last = self.last_checkpoint
        if not resume:
            if last.exists():
                raise UsageError(f"{self.path} already holds a training run ({last}); pass --resume or another --out")
            return None
        if not last.is_file():
            raise UsageError(f"--resume: no checkpoint to resume in {self.path} (expected {last})")
        return read_train_checkpoint(last)

    def log(self, record: dict[str, Any]) -> None:
        if not self.writer:
            return
        if self._log is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._log = open(self.path / LOG_FILE, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._log.write(json.dumps({"time": round(time.time(), 3), **record}, default=str) + "\n")
        self._log.flush()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def write_checkpoint(self, state: dict[str, Any], keep: int, restorer: Restorer, meta: dict[str, Any]) -> Path:
        """The checkpoint (step file and last.pt) and restorer.safetensors beside it."""
        path = write_train_checkpoint(self.path, state, keep)
        save_restorer(restorer, self.restorer_file, meta=meta)
        return path

    def keep_stage1_restorer(self) -> None:
        """Copy the restorer written at the stage boundary: what stage 1 alone gives."""
        with atomic_path(self.path / STAGE1_RESTORER_FILE) as tmp:
            shutil.copyfile(self.restorer_file, tmp)

    def ship_stage1_restorer(self) -> None:
        """Move stage 2's restorer aside and put stage 1's in its place (what restore reads)."""
        with atomic_path(self.path / STAGE2_RESTORER_FILE) as tmp:
            shutil.copyfile(self.restorer_file, tmp)
        with atomic_path(self.restorer_file) as tmp:
            shutil.copyfile(self.path / STAGE1_RESTORER_FILE, tmp)

    def save_samples(self, images: dict[str, torch.Tensor], step: int) -> Path:
        n = min(4, images["x"].shape[0])
        rows = [
            np.concatenate([to_image_uint8(images[key][i]) for i in range(n)], axis=1)
            for key in ("x", "x_ab", "y", "x_ba")
        ]
        return save_png(self.path / SAMPLES_DIR / f"step_{step:08d}.png", np.concatenate(rows, axis=0))
