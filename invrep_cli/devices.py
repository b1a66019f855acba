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


#: /proc/cpuinfo flags for native bf16 arithmetic: x86 AVX512-BF16 or AMX, Arm's BF16 extension.
#: Without them oneDNN still accepts bf16 but emulates it, which is slower than fp32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags() -> set[str]:
    """The processor's feature flags from /proc/cpuinfo (x86 "flags", Arm "Features"); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def cpu_bf16_unsupported() -> str | None:
    """Why this CPU cannot run bf16 at speed, or None when it can (checked, never assumed)."""
    found = sorted(cpu_flags() & set(BF16_CPU_FLAGS))
    if found and torch.backends.mkldnn.is_available():
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    if found:
        return f"this PyTorch build has no oneDNN (CPU capability {capability})"
    return f"this processor has no bf16 instructions (no avx512_bf16, amx_bf16 or bf16 flag; PyTorch sees {capability})"
