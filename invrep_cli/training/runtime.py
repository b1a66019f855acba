"""Where a training process runs: its device and process group, mixed precision, RNG states, and
the Ctrl-C flag. Small pieces the model and the loop share; no networks here."""

from __future__ import annotations

import random
import signal
from typing import Any

import numpy as np
import torch

from invrep_cli.devices import resolve_device
from invrep_cli.distenv import DistInfo
from invrep_cli.errors import UsageError


def setup_device(spec: str, dist: DistInfo) -> torch.device:
    """The device of this process; under torchrun also the process group (NCCL on GPUs, gloo on CPUs)."""
    if not dist.enabled:
        return resolve_device(spec)
    import torch.distributed as td

    if spec.strip().lower() in ("auto", "cuda") and torch.cuda.is_available():
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = resolve_device("cpu" if spec == "auto" else spec)
        backend = "gloo" if device.type == "cpu" else "nccl"
    if not td.is_initialized():
        td.init_process_group(backend=backend)
    return device


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


class StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM: finish the current step, write a checkpoint, stop.

    A second Ctrl-C stops at once (no checkpoint), except under torchrun: there the terminal and
    torchrun both send SIGINT, so the second one is expected and torchrun's own SIGKILL after its
    grace period is the hard stop.
    """

    def __init__(self, escalate: bool = True) -> None:
        self.requested = False
        self.escalate = escalate
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
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
