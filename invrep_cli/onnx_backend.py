"""ONNX Runtime behind the restore backend interface, and the one factory that builds its sessions.

Provider policy (the rembg habit, made explicit and logged):
- ``cpu``: CPUExecutionProvider only;
- ``cuda`` / ``cuda:N``: TensorRT (if installed) then CUDA, with CPU kept only as ORT's fallback for
  single unsupported nodes; a DeviceError (exit 2) when no GPU provider is present or none starts;
- ``auto``: the best GPU provider that starts, else CPU.
The provider that actually runs (``session.get_providers()[0]``) is recorded, never assumed.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from invrep_cli.errors import DeviceError, UsageError, WeightsError
from invrep_cli.fsutil import sha256_file

log = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)

# ONNX tensor element types the restorer graph may use for its input
_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
#: metadata key of the digest of the graph's initializers and nodes (``graph_digest``), written by
#: ``invrep export``; graphs exported before it existed have none and load with a note
GRAPH_DIGEST_KEY = "graph_sha256"


def graph_digest(model: Any) -> str:
    """sha256 over an ONNX model's initializers (name, type, shape, values, in name order) and its
    nodes (each serialised deterministically, in graph order): the weights and what is done with
    them. metadata_props sit outside the graph, so writing the digest there does not change it.

    ONNX Runtime checks a graph's structure, not the values of its weights: in issue 18 a file with
    3 flipped bytes restored with exit 0 and outputs off by up to 37/255, one with 200 all black.
    """
    import hashlib

    from onnx import numpy_helper

    digest = hashlib.sha256()
    for tensor in sorted(model.graph.initializer, key=lambda t: t.name):
        values = numpy_helper.to_array(tensor)
        digest.update(f"{tensor.name}\0{tensor.data_type}\0{tuple(tensor.dims)}\0".encode())
        digest.update(np.ascontiguousarray(values).tobytes())
    for node in model.graph.node:
        digest.update(node.SerializeToString(deterministic=True))
    return digest.hexdigest()


def verify_graph(path: Path) -> str | None:
    """Check a graph file against the digest in its metadata. Returns a note when it has none (an
    older export); raises WeightsError (exit 2) when the file cannot be parsed or does not match."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from exc
    stored = next((p.value for p in model.metadata_props if p.key == GRAPH_DIGEST_KEY), None)
    if stored is None:
        return (
            f"{path.name} has no {GRAPH_DIGEST_KEY} in its metadata (exported before invrep checked graphs): "
            "loaded unchecked; export it again to have it verified"
        )
    if graph_digest(model) != stored:
        raise WeightsError(
            f"{path}: its weights or nodes do not match the {GRAPH_DIGEST_KEY} digest written at export: the "
            "file is damaged (or was edited); download or export it again"
        )
    return None


def _cuda_driver_has_device() -> bool:
    """Whether an NVIDIA driver with at least one GPU is present, without importing torch.

    onnxruntime-gpu lists the CUDA provider even on machines with no GPU; asking it anyway prints
    a screen of load errors. The driver library answers in milliseconds.
    """
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return False
        return count.value > 0
    return False


def _threads(threads: int | None) -> int | None:
    """Explicit ``threads`` wins; else OMP_NUM_THREADS (which ORT itself ignores); else ORT's default."""
    if threads is not None:
        return max(1, int(threads))
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return max(1, int(env)) if env.isdigit() else None


def _gpu_provider_options(provider: str, device_id: int, cache_dir: Path | None) -> dict[str, Any]:
    options: dict[str, Any] = {"device_id": device_id}
    if provider == TENSORRT and cache_dir is not None:
        # TensorRT builds an engine per input shape (minutes for a large net); cache them across runs
        options.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)})
    return options


def _trt_cache_dir() -> Path | None:
    from invrep_cli.weights import cache_home

    path = cache_home() / "tensorrt"  # beside the weights cache
    with contextlib.suppress(OSError):
        path.mkdir(parents=True, exist_ok=True)
        return path
    return None


def make_session(path: str | os.PathLike[str], device: str = "auto", threads: int | None = None) -> tuple[Any, str]:
    """Build an ONNX Runtime InferenceSession once; returns (session, provider actually in use).

    ``device``: auto | cpu | cuda | cuda:N. ``threads`` sets intra-op threads (else OMP_NUM_THREADS,
    else ORT's default of one per core).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"ONNX file not found: {path}")
    spec = device.strip().lower()
    available = ort.get_available_providers()
    if spec == "cpu":
        wanted: list[str] = [CPU]
        device_id = 0
    elif spec == "auto" or spec == "cuda" or spec.startswith("cuda:"):
        device_id = 0
        if spec.startswith("cuda:"):
            try:
                device_id = int(spec.split(":", 1)[1])
            except ValueError:
                raise DeviceError(f"--device {device!r}: choose auto, cuda, cuda:N or cpu") from None
        gpu = [p for p in GPU_PROVIDERS if p in available]
        if spec != "auto":
            if CUDA not in available:
                raise DeviceError(
                    f"--device {spec}: this onnxruntime has no CUDA provider (available: {', '.join(available)}); "
                    "install onnxruntime-gpu"
                )
            if not _cuda_driver_has_device():
                raise DeviceError(f"--device {spec}: no NVIDIA driver or CUDA GPU found for ONNX Runtime")
        elif gpu and not _cuda_driver_has_device():
            gpu = []  # no GPU: do not let ORT print its provider load failures
        wanted = gpu + [CPU]
    else:
        raise DeviceError(f"--device {device!r}: choose auto, cuda, cuda:N or cpu")

    options = ort.SessionOptions()
    n_threads = _threads(threads)
    if n_threads is not None:
        options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    cache_dir = _trt_cache_dir() if TENSORRT in wanted else None
    provider_options = [_gpu_provider_options(p, device_id, cache_dir) if p in GPU_PROVIDERS else {} for p in wanted]
    # ORT prints provider fallbacks on stdout, which would corrupt --json output; keep them as a note
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            session = ort.InferenceSession(str(path), options, providers=wanted, provider_options=provider_options)
    except Exception as exc:  # InvalidGraph, NoSuchFile, provider failures: all mean "cannot use this file"
        if spec != "cpu" and spec != "auto":
            raise DeviceError(f"--device {spec}: ONNX Runtime could not start ({exc})") from exc
        raise WeightsError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc})") from exc
    provider = session.get_providers()[0]
    if spec not in ("auto", "cpu") and provider not in GPU_PROVIDERS:
        note = captured.getvalue().strip()
        raise DeviceError(
            f"--device {spec}: the CUDA provider failed to initialise, ONNX Runtime fell back to {provider}"
            + (f" ({note.splitlines()[0]})" if note else "")
        )
    return session, provider


def read_metadata(session: Any) -> dict[str, Any]:
    """The graph's metadata_props, JSON values decoded where they parse."""
    from invrep_cli.metadata import decode_metadata

    return decode_metadata(session.get_modelmeta().custom_metadata_map)


class OnnxBackend:
    """An exported restorer run by ONNX Runtime: N x 3 x H x W float32 in [0, 1] -> same shape."""

    name = "onnx"
    accepts_gray = False  # the graph takes 3 channels
    level_input = False  # export refuses conditioned restorers

    def __init__(
        self, path: str | os.PathLike[str], device: str = "auto", precision: str = "auto", threads: int | None = None
    ) -> None:
        self.path = Path(path)
        self.on_warning: Callable[[str], None] = log.warning
        if not self.path.is_file():
            raise WeightsError(f"ONNX file not found: {self.path}")
        note = verify_graph(self.path)
        #: what loading found worth saying (an unchecked older graph)
        self.notes: list[str] = [note] if note else []
        self.session, self.device = make_session(self.path, device, threads)
        self.metadata = read_metadata(self.session)
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.input_dtype = _ONNX_TYPES.get(graph_input.type)
        if self.input_dtype is None:
            raise WeightsError(f"{self.path}: unsupported ONNX input type {graph_input.type}")
        # the graph decides its precision (an fp16 export may keep float32 inputs behind Cast nodes)
        graph_precision = str(self.metadata.get("precision", "fp16" if self.input_dtype == np.float16 else "fp32"))
        if precision not in ("auto", graph_precision):
            how = {"fp16": "export it again with --fp16", "int8": "export it again with --int8 --calibrate DIR",
                   "fp32": "export it again without --fp16 or --int8"}.get(precision, "use --backend torch")
            raise UsageError(f"--precision {precision}: {self.path.name} is an {graph_precision} graph; {how}")
        self.precision = graph_precision
        config = self.metadata.get("model_config") or {}
        default_multiple = 2 ** int(config.get("n_downsample", 2)) if isinstance(config, dict) else 4
        self.size_multiple = int(self.metadata.get("size_multiple", default_multiple))
        self.context_margin = int(self.metadata.get("context_margin", 0))
        # smaller inputs would need replicate instead of reflect padding inside the net (see export.py)
        self.min_size = int(self.metadata.get("min_size", self.size_multiple + 1))
        self.width = int(config.get("width", 64)) if isinstance(config, dict) else 64
        self.weights_sha256 = sha256_file(self.path)

    def run(self, batch: np.ndarray, level: float | None = None) -> np.ndarray:
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected N x 3 x H x W, got {batch.shape}")
        h, w = batch.shape[-2:]
        pad_h, pad_w = max(0, self.min_size - h), max(0, self.min_size - w)
        x = batch
        if pad_h or pad_w:
            # tiny images: the graph was traced with reflect padding, which needs more pixels than
            # the pad; edge-extend first (what PyTorch does for them) and crop back
            x = np.pad(x, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="edge")
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        y = self.session.run(None, {self.input_name: x})[0]
        return np.asarray(y[..., :h, :w], dtype=np.float32)

    def free_memory(self) -> int:
        """Bytes free on the device the provider runs on (CUDA via the driver, else RAM)."""
        from invrep_cli.backends import available_ram

        if self.device in GPU_PROVIDERS:
            try:
                import torch

                return int(torch.cuda.mem_get_info()[0])
            except Exception:
                pass
        return available_ram()

    def bytes_per_pixel(self) -> float:
        """Estimated like the torch backend's CPU figure: ~10 x width float32 maps at full size."""
        return 10.0 * self.width * 4

    def release_memory(self) -> None:
        """ORT keeps its arena; nothing to hand back between retries."""

    @property
    def precision_policy(self) -> str:
        return self.precision

    def select_bit_depth(self, bits: int) -> None:
        """The graph has one precision (chosen at export) whatever the output depth."""

    def __repr__(self) -> str:
        return f"OnnxBackend({self.path.name}, {self.device}, {self.precision})"
