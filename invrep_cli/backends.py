"""Inference backends behind one small interface: PyTorch here, ONNX Runtime in ``onnx_backend``.

A backend runs N x 3 x H x W float32 batches in [0, 1] (H, W multiples of ``size_multiple``) and
says what actually ran (``device``, ``precision``) so logs and JSON records are honest. Device
policy: ``auto`` takes CUDA when present, ``cuda`` without a GPU is an error (never a silent CPU
fallback). Precision ``auto`` is bf16 (fp16 where bf16 is unsupported) on CUDA; on CPU it is bf16
for 8-bit outputs where the processor has bf16 instructions, and fp32 for 16-bit outputs (whose
65536 levels bf16's 8 significant bits cannot hold) and on every other CPU. fp16 on CPU is
refused, and bf16 on CPU is refused where the processor has no bf16 instructions
(``devices.cpu_bf16_unsupported``); int8 is an ONNX graph (``invrep export --int8``), not a torch
precision. Half-precision output with NaN/inf is recomputed in fp32 with a warning.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from invrep_cli.errors import UsageError

log = logging.getLogger(__name__)

BACKEND_CHOICES = ("torch", "onnx")
PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16", "int8")
#: after this many fp32 recomputations the backend stays in fp32 (half precision is not working)
_MAX_HALF_FALLBACKS = 3


class Backend(Protocol):
    """Everything restoration asks of a backend (restore.py calls nothing else)."""

    name: str  # "torch" or "onnx"
    device: str  # what actually runs, e.g. "cpu (2 threads)", "cuda:0 (NVIDIA H100)", "CPUExecutionProvider"
    precision: str  # "fp32" | "fp16" | "bf16" actually in use
    precision_policy: str  # what a run uses, e.g. "bf16" or "bf16 (8-bit), fp32 (16-bit)": recorded
    size_multiple: int  # tiles must be multiples of this (4 for the default shape)
    context_margin: int  # px of context each tile needs so its centre equals whole-image output
    accepts_gray: bool  # run() takes N x 1 x H x W too (else gray is replicated to RGB)
    level_input: bool  # a conditioned restorer: run() wants each image's noise level (level.py)
    weights_sha256: str  # of the weights file: a folder run's record compares it
    on_warning: Callable[[str], None]  # one-line warnings while running (e.g. an fp32 fallback)
    metadata: dict[str, Any]  # what the weights file says about itself (model config, margin, provenance)
    notes: list[str]  # what loading found worth saying (e.g. an older graph loaded unchecked)

    def run(self, batch: np.ndarray, level: float | None = None) -> np.ndarray: ...  # N x C x H x W in [0,1] -> same

    def free_memory(self) -> int: ...  # bytes free for activations on the device that runs

    def bytes_per_pixel(self) -> float: ...  # peak inference memory per input pixel (measured or estimated)

    def release_memory(self) -> None: ...  # give cached device memory back before an out-of-memory retry

    def select_bit_depth(self, bits: int) -> None: ...  # the next image is written at this depth


def theoretical_margin(receptive_field: int, size_multiple: int) -> int:
    """Half the receptive field, rounded up to the size multiple: enough context for exactness."""
    half = math.ceil(receptive_field / 2)
    return -(-half // size_multiple) * size_multiple


class TorchBackend:
    """The restorer in PyTorch, from a ``.safetensors`` or ``invrep train`` ``.pt`` file."""

    name = "torch"
    accepts_gray = True  # the restorer has its own 1-channel path

    def __init__(
        self,
        weights: str | Path,
        device: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
        on_warning: Callable[[str], None] | None = None,
        compile: bool = False,
    ) -> None:
        import torch

        from invrep_cli.checkpoint import load_restorer
        from invrep_cli.devices import cpu_bf16_unsupported, describe_device, resolve_device
        from invrep_cli.models import receptive_field

        if precision not in PRECISION_CHOICES:
            raise UsageError(f"--precision {precision!r}: choose one of {', '.join(PRECISION_CHOICES)}")
        if precision == "int8":
            raise UsageError(
                "--precision int8 runs through ONNX Runtime: invrep export --onnx M.onnx --int8 --calibrate DIR, "
                "then invrep restore --backend onnx --weights M.onnx"
            )
        if threads is not None:
            if threads < 1:
                raise UsageError(f"--threads {threads}: must be >= 1")
            torch.set_num_threads(threads)
        self.torch_device = resolve_device(device)
        on_cuda = self.torch_device.type == "cuda"
        #: precision for outputs over 8 bits, when it differs from the one for 8-bit outputs
        wide_precision: str | None = None
        if precision == "auto" and on_cuda:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif precision == "auto":
            # measured (README, Measured: CPU precision): on CBSD68 through restore's tiles bf16
            # was 2.1-2.7x fp32 at -0.011 dB on 8-bit outputs; 16-bit outputs stay fp32
            precision, wide_precision = ("fp32", None) if cpu_bf16_unsupported() else ("bf16", "fp32")
        if precision == "fp16" and not on_cuda:
            raise UsageError("--precision fp16 on CPU is refused (slow and prone to black images); use fp32 or bf16")
        if precision == "bf16" and not on_cuda and (reason := cpu_bf16_unsupported()):
            raise UsageError(f"--precision bf16 on CPU is refused: {reason}; use --precision fp32")
        self.precision = precision
        self.precision_8bit, self.precision_16bit = precision, wide_precision or precision
        self.on_warning = on_warning or log.warning
        self.half_fallbacks = 0

        model, meta = load_restorer(weights)
        self.notes: list[str] = []
        self.metadata: dict[str, Any] = meta
        self.weights_sha256 = str(meta["sha256"])
        self.config = model.config
        self.level_input = model.config.level_input
        self.weights_path = Path(weights)
        self.size_multiple = model.size_multiple
        self.receptive_field = receptive_field(model.config)
        stored = meta.get("context_margin")
        self.context_margin = (
            int(stored) if isinstance(stored, (int, float)) and stored >= 0
            else theoretical_margin(self.receptive_field, self.size_multiple)
        )
        # channels_last lets cuDNN pick its faster NHWC kernels; on CPU it is what oneDNN's
        # convolutions want: fp32 1.20x and bf16 2.74x plain fp32 on this project's 2-core machine
        # (paired medians, benchmarks/precision_speed.py), so every path uses it
        self.memory_format = torch.channels_last
        self.model_fp32 = model.to(self.torch_device, memory_format=self.memory_format).eval()
        self._dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        self._models: dict[str, Any] = {}
        for name in {self.precision_8bit, self.precision_16bit}:
            model_p = (
                self.model_fp32 if name == "fp32"
                else copy.deepcopy(self.model_fp32).to(dtype=self._dtypes[name], memory_format=self.memory_format)
            )
            if compile:
                # Tiles share one shape, so a static-shape compile is reused for every tile; on CUDA
                # "max-autotune" also captures CUDA graphs, removing per-kernel launch overhead.
                mode = "max-autotune" if on_cuda else "default"
                model_p = torch.compile(model_p, mode=mode, dynamic=False)
            self._models[name] = model_p
        self.dtype = self._dtypes[precision]
        self.model = self._models[precision]
        self.compiled = compile
        self.device = describe_device(self.torch_device)

    @property
    def precision_policy(self) -> str:
        """What this backend runs each output at: one precision, or one per output depth."""
        if self.precision_8bit == self.precision_16bit:
            return self.precision_8bit
        return f"{self.precision_8bit} (8-bit), {self.precision_16bit} (16-bit)"

    def select_bit_depth(self, bits: int) -> None:
        """Run the next image at the precision for its output depth (differs only for ``auto`` on
        a bf16 CPU: bf16 for 8-bit, fp32 for 16-bit outputs)."""
        name = self.precision_16bit if bits > 8 else self.precision_8bit
        self.precision, self.dtype, self.model = name, self._dtypes[name], self._models[name]

    def run(self, batch: np.ndarray, level: float | None = None) -> np.ndarray:
        """``level``: the whole image's noise level for a conditioned restorer (None: each batch's own)."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            x = x.to(self.torch_device, non_blocking=True).contiguous(memory_format=self.memory_format)
            levels = None if level is None else torch.full((x.shape[0],), float(level), device=self.torch_device)
            y = self.model(x.to(self.dtype)) if levels is None else self.model(x.to(self.dtype), levels)
            if self.precision != "fp32" and not bool(torch.isfinite(y).all()):
                y = self._fp32_fallback(x, levels)
            return y.float().cpu().numpy()

    def _fp32_fallback(self, x: Any, levels: Any = None) -> Any:
        self.half_fallbacks += 1
        message = f"{self.precision} output had NaN/inf: batch recomputed in fp32"
        if self.half_fallbacks >= _MAX_HALF_FALLBACKS:
            message += f"; switching to fp32 for the rest of the run ({self.half_fallbacks} fallbacks)"
            self.precision_8bit = self.precision_16bit = "fp32"
            self._models.setdefault("fp32", self.model_fp32)
            self.select_bit_depth(8)
        self.on_warning(message)
        return self.model_fp32(x) if levels is None else self.model_fp32(x, levels)

    def bytes_per_pixel(self) -> float:
        """Peak inference memory per input pixel: measured on CUDA, estimated on CPU."""
        import torch

        element = 4 if self.precision == "fp32" else 2
        if self.torch_device.type != "cuda":
            # the widest full-resolution stage holds about 10 x width channels at once (upsampled
            # input, its padded copy, conv output, norm output), in fp32 on CPU
            return 10.0 * self.config.width * element
        side = 8 * self.size_multiple * 8
        probe = np.zeros((1, self.config.image_channels, side, side), dtype=np.float32)
        torch.cuda.synchronize(self.torch_device)
        before = torch.cuda.memory_allocated(self.torch_device)
        torch.cuda.reset_peak_memory_stats(self.torch_device)
        self.run(probe)
        peak = torch.cuda.max_memory_allocated(self.torch_device) - before
        return max(peak / (side * side), 4.0 * self.config.width * element)

    def free_memory(self) -> int:
        """Bytes free for activations on this backend's device."""
        import torch

        if self.torch_device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(self.torch_device)
            return int(free)
        return available_ram()

    def release_memory(self) -> None:
        """Hand cached CUDA blocks back after an out-of-memory error, before a retry."""
        import torch

        if self.torch_device.type == "cuda":
            torch.cuda.empty_cache()


def make_backend(
    weights: str | Path,
    backend: str = "torch",
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    compile: bool = False,
) -> Backend:
    """Build the backend that runs ``weights`` (``.safetensors``/``.pt`` for torch, ``.onnx`` for onnx).
    ``compile`` (torch only) wraps the restorer in ``torch.compile`` for the fixed tile shape."""
    if backend == "torch":
        if Path(weights).suffix == ".onnx":
            raise UsageError(f"{weights} is an ONNX model: use --backend onnx")
        return TorchBackend(weights, device, precision, threads, compile=compile)
    if compile:
        raise UsageError("--compile applies to the torch backend only")
    if backend == "onnx":
        try:
            from invrep_cli.onnx_backend import OnnxBackend
        except ImportError as exc:
            raise UsageError(f"the ONNX Runtime backend is not available ({exc})") from exc
        return OnnxBackend(weights, device, precision, threads)
    raise UsageError(f"--backend {backend!r}: choose one of {', '.join(BACKEND_CHOICES)}")


def available_ram() -> int:
    """Bytes of RAM available now (psutil is not a dependency): /proc/meminfo, else sysconf."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30  # no way to ask (e.g. Windows without psutil): assume a modest 4 GiB


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA or ONNX Runtime out-of-memory, whatever type the library raised it as."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return "out of memory" in text or "failed to allocate memory" in text


def measure_context_margin(
    run_fn: Callable[[np.ndarray], np.ndarray],
    size_multiple: int,
    tol: float = 0.5 / 255,
    max_margin: int = 96,
    core: int = 16,
    channels: int = 3,
    seed: int = 0,
) -> int:
    """Smallest margin (a multiple of ``size_multiple``) for which a tile's core equals the
    whole-image output to within ``tol`` (max abs difference).

    The test image is smooth structure plus Gaussian noise, what a denoiser sees. The effective
    receptive field is usually much smaller than the theoretical one, so storing the measured
    margin in the weights metadata (``context_margin``) makes tiling cheaper. Returns
    ``max_margin`` (rounded up) when no smaller margin passes.
    """
    max_margin = -(-max_margin // size_multiple) * size_multiple
    core = -(-core // size_multiple) * size_multiple
    # room for the largest margin on both sides, plus the same again so the core is far from borders
    side = core + 4 * max_margin
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    smooth = [
        0.5 + 0.4 * np.sin(8 * (rng.random() * xx + rng.random() * yy) + 6 * rng.random()) for _ in range(channels)
    ]
    image = np.clip(np.stack(smooth) + rng.normal(0, 0.1, (channels, side, side)), 0, 1).astype(np.float32)[None]
    whole = run_fn(image)[0]
    c0 = (side // 2 // size_multiple) * size_multiple
    c1 = c0 + core
    for margin in range(0, max_margin + 1, size_multiple):
        tile = run_fn(np.ascontiguousarray(image[:, :, c0 - margin : c1 + margin, c0 - margin : c1 + margin]))[0]
        centre = tile[:, margin : margin + core, margin : margin + core]
        if float(np.abs(centre - whole[:, c0:c1, c0:c1]).max()) <= tol:
            return margin
    return max_margin
