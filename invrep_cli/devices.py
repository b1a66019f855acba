"""Device policy: ``auto`` takes CUDA when present, ``cuda`` fails without it (never a silent
fallback), ``cpu`` is always there."""

from __future__ import annotations

import torch

from invrep_cli.errors import DeviceError

DEVICE_CHOICES = ("auto", "cuda", "cpu")


def resolve_device(spec: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a torch.device, or DeviceError (exit 2)."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {spec}: no CUDA GPU is available to PyTorch on this machine")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    raise DeviceError(f"--device {spec!r}: choose auto, cuda, cuda:N or cpu")


def describe_device(device: torch.device) -> str:
    """Human-readable name of what actually runs, for logs and JSON records."""
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
