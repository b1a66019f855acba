"""Speed, memory and quality of restoration across backends, precisions and classical baselines.

``run_bench(BenchConfig(...))`` adds seeded Gaussian noise to clean images, quantised to 8 bit
exactly as a saved noisy file would be (``clip(round(clean + N(0, sigma)), 0, 255)``, clean in
0..255), restores the same noisy images with every method asked for, and returns one row per
(method configuration, sigma): MP/s, peak memory, and PSNR/SSIM from scikit-image (mean over the
images), plus a description of the machine. Outputs are quantised to 8 bit before scoring too,
as a saved restored file would be.

With ``pairs`` (``invrep bench --pairs``) the noisy images are real files scored against their
references (``pairs``); rows have no sigma, and NLM and BM3D run once per kind of per-image level:
estimated from the noisy image, and the oracle std(noisy - reference), an upper bound.

What is measured:
- MP/s = input megapixels / seconds inside the one-image restore call (compute + tiling + the
  array conversions around it; no file I/O). For network rows the first image is restored once
  untimed first (warm-up: lazy initialisation, cuDNN autotuning, ORT graph optimisation).
- Peak memory: on CUDA with torch, ``torch.cuda.max_memory_allocated`` (reset before the run);
  on CUDA with ONNX Runtime, the device memory the process took during the run (cudaMemGetInfo
  before/after; ORT's arena does not shrink, so "after" is its high-water mark); on CPU, the peak
  RSS the run added: VmHWM is reset by writing 5 to /proc/self/clear_refs, then
  VmHWM - VmRSS(at reset). Where clear_refs is not writable, ru_maxrss - VmRSS(before) is used
  when the process peak rose during the run (else no figure); the row's memory_method says which.
  By default each timed row (baselines too) runs in a fresh ``spawn`` subprocess, so allocator
  caches left by earlier rows neither hide nor inflate its peak; the untimed warm-up is inside the
  measured span, so its peak counts.

The parts live by role: ``synthetic`` (clean images, noise, PSNR/SSIM, shared with demo),
``baselines`` (NLM, BM3D), ``memory`` (CPU peak RSS), ``pairs`` (real pairs); network rows restore
through ``restore.plan_restore`` exactly as ``invrep restore`` does. Nothing here imports Typer or Rich; the
CLI renders ``BenchResult``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from invrep_cli.baselines import BASELINES, bm3d_denoise, nlm_denoise, nlm_h
from invrep_cli.config import ModelConfig
from invrep_cli.errors import InvrepError, UsageError, WeightsError
from invrep_cli.memory import CpuPeak
from invrep_cli.pairs import NOISY_PATTERN, REF_PATTERN
from invrep_cli.synthetic import add_noise, image_metrics, load_clean_images, noise_seed, to_uint8

BACKENDS = ("torch", "onnx")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")

@dataclass
class BenchConfig:
    """Everything ``invrep bench`` needs; built by the CLI."""

    #: folder of clean images; None uses scikit-image's sample photos. With ``pairs``: the folder of pairs
    clean_dir: str | None = None
    #: score real noisy/reference pairs from ``clean_dir`` instead of adding noise (``sigmas`` unused)
    pairs: bool = False
    #: pairs mode: one '*' each, matched against paths relative to ``clean_dir``; the '*' names the pair
    noisy_pattern: str = NOISY_PATTERN
    ref_pattern: str = REF_PATTERN
    sigmas: tuple[float, ...] = (15.0, 25.0, 50.0)
    #: weights specs (registry name or path); None means the bundled default
    weights: tuple[str | None, ...] = (None,)
    backends: tuple[str, ...] = BACKENDS
    #: "auto" (every precision that makes sense on each device) or some of fp32/fp16/bf16
    precisions: tuple[str, ...] = ("auto",)
    #: auto (CPU, plus CUDA when present) | cpu | cuda | cuda:N
    device: str = "auto"
    #: tile size; None lets restore choose
    tile: int | None = None
    #: at most this many images
    limit: int | None = None
    #: convert every image to gray (Set12-style benchmarks)
    gray: bool = False
    seed: int = 0
    baselines: tuple[str, ...] = ("noisy", "nlm")
    #: keep the noisy and restored images here (PNG)
    save_dir: str | None = None
    #: run each timed row in a fresh spawn subprocess (honest peak memory); False is faster
    isolate: bool = True
    #: intra-op threads for torch / ONNX Runtime; None = their defaults
    threads: int | None = None
    #: folder of clean images whose noisy crops calibrate int8 rows; None = scikit-image photos that
    #: are not bench images (rocket, motorcycle), never the images being scored
    calibrate: str | None = None
    #: network rows restore as `invrep restore --strength` does: input + strength x (restored - input)
    strength: float = 1.0
    #: network rows restore as `invrep restore --self-ensemble N` does (N orientations averaged; 1 = off)
    self_ensemble: int = 1

    def __post_init__(self) -> None:
        for b in self.baselines:
            if b not in BASELINES:
                raise UsageError(f"--baselines: unknown baseline {b!r}; choose from {', '.join(BASELINES)}")
        for p in self.precisions:
            if p != "auto" and p not in PRECISIONS:
                raise UsageError(f"--precisions: unknown precision {p!r}; choose auto or {', '.join(PRECISIONS)}")
        # sigma 0 scores the clean images themselves: how much a method changes a clean photo
        if not self.sigmas or any(s < 0 for s in self.sigmas):
            raise UsageError("--sigma: give one or more noise levels >= 0 (0-255 scale), e.g. 0,15,25,50")
        if self.tile is not None or self.strength != 1.0 or self.self_ensemble != 1:
            from invrep_cli.restore import RestoreConfig

            # the same --tile, --strength and --self-ensemble rules as restore (UsageError)
            RestoreConfig(tile=self.tile, strength=self.strength, self_ensemble=self.self_ensemble)
        if self.pairs and self.clean_dir is None:
            raise UsageError("--pairs needs a folder of noisy/reference pairs")


@dataclass
class BenchRow:
    """One method configuration at one sigma. ``skipped`` holds the reason when it did not run."""

    method: str
    #: the added noise level (0-255); None in pairs mode, where the noise is in the files
    sigma: float | None
    backend: str = "-"
    device: str = "-"
    precision: str = "-"
    weights: str | None = None
    weights_sha256: str | None = None
    tile: int | None = None
    #: network rows: the --strength they restored at (1: the model as trained)
    strength: float = 1.0
    #: network rows: the --self-ensemble N they restored with (1: one pass)
    self_ensemble: int = 1
    images: int = 0
    megapixels: float = 0.0
    seconds: float | None = None
    mp_per_s: float | None = None
    peak_memory_mb: float | None = None
    memory_method: str | None = None
    psnr: float | None = None
    ssim: float | None = None
    #: set when the row did not run: the configuration is unavailable here (exit 0)
    skipped: str | None = None
    #: set when the row was available but failed while running (exit 1)
    failed: str | None = None
    #: pairs mode, classical rows: the per-image level they were given, "estimated" (from the noisy
    #: image, as a user could) or "oracle" (std(noisy - reference)); levels are in detail
    noise_level: str | None = None
    #: True for oracle rows: a level a user would not have, so a bound rather than a result
    upper_bound: bool = False
    detail: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        parts = [self.method]
        if self.noise_level:
            parts.append(self.noise_level)
        if self.weights:
            parts.append(self.weights)
        if self.strength != 1.0:
            parts.append(f"strength{self.strength:g}")
        if self.self_ensemble > 1:
            parts.append(f"x{self.self_ensemble}")
        if self.backend != "-":
            parts += [self.backend, self.device.split(" ")[0], self.precision]
        return "-".join(parts)


@dataclass
class BenchResult:
    rows: list[BenchRow]
    machine: dict[str, Any]
    config: dict[str, Any]
    images: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def any_failed(self) -> bool:
        return any(r.failed for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": "pairs" if self.config.get("pairs") else "synthetic",
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "machine": self.machine,
            "config": self.config,
            "images": self.images,
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- cost model


def restorer_macs_per_pixel(config: ModelConfig | str, size: int = 64) -> float:
    """Multiply-accumulates of the restorer per input pixel, counted by forward hooks on every conv.

    Counts out_elements x (in_channels / groups) x kernel area for each nn.Conv2d on a random
    ``size`` x ``size`` RGB input (a multiple of the size multiple, so no padding is counted).
    Norms, activations, upsampling and the residual adds are left out: they are a few operations
    per element against hundreds of MACs. ``lir`` gives 1,083,776 (about 2.17 GFLOP per MP).
    """
    import torch
    from torch import nn

    from invrep_cli.config import model_preset
    from invrep_cli.models.restorer import Restorer

    if isinstance(config, str):
        config = model_preset(config)
    size = max(size, config.size_multiple) // config.size_multiple * config.size_multiple
    restorer = Restorer(config).eval()
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in restorer.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            restorer(torch.rand(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    return total / float(size * size)


# --------------------------------------------------------------------------- one timed job


@dataclass
class _Job:
    """A method over every noisy image at every sigma; picklable so it can run in a subprocess."""

    method: str  # "nlm" | "bm3d" | "model"
    noisy: dict[float, list[np.ndarray]]
    gray_flags: list[bool]
    weights_path: str | None = None
    backend: str = "-"
    device: str = "cpu"
    precision: str = "fp32"
    tile: int | None = None
    threads: int | None = None
    #: classical methods in pairs mode: each image's own noise level (0-255) instead of the sigma key
    levels: list[float] | None = None
    strength: float = 1.0
    self_ensemble: int = 1


@dataclass
class _JobResult:
    outputs: dict[float, list[np.ndarray]] = field(default_factory=dict)
    seconds: dict[float, float] = field(default_factory=dict)
    peak_bytes: float | None = None
    memory_method: str | None = None
    tile: int | None = None
    device: str | None = None
    precision: str | None = None
    skipped: str | None = None
    failed: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _run_job(job: _Job) -> _JobResult:
    """Run one job here; exceptions become skipped (unavailable) or failed rows, never escape."""
    result = _JobResult(detail={"pid": os.getpid()})
    try:
        if job.method == "nlm":
            _run_baseline(job, result, lambda img, sigma, gray: nlm_denoise(img, nlm_h(sigma, gray)))
        elif job.method == "bm3d":
            try:
                import bm3d  # noqa: F401
            except ImportError:
                result.skipped = "the bm3d package is not installed (pip install 'invrep[bm3d]')"
                return result
            _run_baseline(job, result, lambda img, sigma, gray: bm3d_denoise(img, sigma))
        elif job.method == "model":
            _run_model(job, result)
        else:
            raise ValueError(f"unknown job method {job.method!r}")
    except _Unavailable as exc:
        result.skipped = str(exc)
    except InvrepError as exc:
        result.failed = str(exc)
    except Exception as exc:  # a row that breaks is reported in the table; the bench goes on
        result.failed = f"{type(exc).__name__}: {exc}"
    return result


class _Unavailable(Exception):
    """This configuration cannot run on this machine (reported as a skipped row)."""


def _run_baseline(job: _Job, result: _JobResult, fn: Callable[[np.ndarray, float, bool], np.ndarray]) -> None:
    probe = CpuPeak()
    probe.start()
    # warm-up on a corner of the first image: library and thread-pool start-up stay out of MP/s
    first_sigma = next(iter(job.noisy))
    fn(np.ascontiguousarray(job.noisy[first_sigma][0][:64, :64]), max(first_sigma, 1.0), job.gray_flags[0])
    for sigma, noisies in job.noisy.items():
        outs, total = [], 0.0
        levels = job.levels or [sigma] * len(noisies)
        for img, gray, level in zip(noisies, job.gray_flags, levels, strict=True):
            t0 = time.perf_counter()
            # an estimate of 0 (no flat areas to measure) leaves the image as it is
            outs.append(fn(img, level, gray) if level > 0 else img.copy())
            total += time.perf_counter() - t0
        result.outputs[sigma] = outs
        result.seconds[sigma] = total
    result.peak_bytes, result.memory_method = probe.stop()
    result.device = "cpu"


def _run_model(job: _Job, result: _JobResult) -> None:
    import torch

    from invrep_cli.restore import RestoreConfig, plan_restore, restore_pixels

    if job.threads:
        torch.set_num_threads(job.threads)
    cuda = job.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise _Unavailable(f"{job.device}: no CUDA GPU here")
    if job.precision == "fp16" and not cuda:
        raise _Unavailable(f"fp16 is only run on CUDA (on CPU it is slow or wrong), so not on {job.device}")
    if job.precision == "int8" and (job.backend != "onnx" or cuda):
        raise _Unavailable("int8 is an ONNX Runtime CPU graph (invrep export --int8)")
    if job.precision == "bf16" and job.backend == "onnx":
        raise _Unavailable("bf16 has no ONNX Runtime path here (fp32 or fp16 models only)")
    if job.precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise _Unavailable("bf16 is not supported by this GPU")

    free_before = torch.cuda.mem_get_info()[0] if cuda and job.backend == "onnx" else 0
    # the plan restore would make: same backend factory, same tile choice and default overlap
    config = RestoreConfig(weights=job.weights_path, backend=job.backend, device=job.device, precision=job.precision,
                           tile=job.tile, threads=job.threads)
    try:
        plan = plan_restore(config)
    except (ImportError, InvrepError) as exc:
        raise _Unavailable(f"{job.backend} on {job.device} at {job.precision}: {exc}") from exc
    backend, choice, overlap = plan.backend, plan.tile, config.tile_overlap
    result.tile = choice.tile
    result.detail.update(overlap=overlap, batch_size=choice.batch_size, tile_reason=choice.reason)
    if "int8_parity" in backend.metadata:  # the export's PSNR against the fp32 graph
        result.detail["int8_parity"] = backend.metadata["int8_parity"]
    actual = backend.device
    # ORT backends report the execution provider that runs; keep the device and name the provider
    result.device = f"{job.device} (ORT {actual.replace('ExecutionProvider', '')})" if "Provider" in actual else actual
    result.precision = backend.precision
    if job.precision != "auto" and result.precision != job.precision:
        # the backend fell back (e.g. fp16 check failed): report it rather than mislabel the row
        result.detail["requested_precision"] = job.precision

    def restore_one(img: np.ndarray) -> np.ndarray:
        pixels = img.astype(np.float32) / 255.0
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        out = restore_pixels(pixels, backend, choice.tile, overlap, choice.batch_size, strength=job.strength,
                             self_ensemble=job.self_ensemble)
        return to_uint8(out.reshape(img.shape))

    probe: CpuPeak | None = None
    if cuda and job.backend == "torch":
        torch.cuda.reset_peak_memory_stats()
    elif not cuda:
        probe = CpuPeak()
        probe.start()
    first_sigma = next(iter(job.noisy))
    restore_one(job.noisy[first_sigma][0])  # warm-up, untimed
    for sigma, noisies in job.noisy.items():
        outs, total = [], 0.0
        for img in noisies:
            t0 = time.perf_counter()
            outs.append(restore_one(img))
            total += time.perf_counter() - t0
        result.outputs[sigma] = outs
        result.seconds[sigma] = total
    # a half-precision backend may have fallen back to fp32 during the run (NaN/inf output)
    result.precision = backend.precision

    if probe is not None:
        result.peak_bytes, result.memory_method = probe.stop()
    elif job.backend == "torch":
        result.peak_bytes = float(torch.cuda.max_memory_allocated())
        result.memory_method = "torch.cuda.max_memory_allocated"
    else:
        result.peak_bytes = float(max(0, free_before - torch.cuda.mem_get_info()[0]))
        result.memory_method = "device memory taken during the run (cudaMemGetInfo; ORT arena)"


def exit_with_parent(parent: int, poll_seconds: float = 0.5) -> None:
    """In a row's subprocess: exit as soon as ``parent`` is gone. A killed or interrupted
    ``invrep bench`` otherwise left its current row running on, orphaned, for minutes."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _execute(job: _Job, isolate: bool) -> _JobResult:
    if not isolate:
        return _run_job(job)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(
            max_workers=1, mp_context=ctx, initializer=exit_with_parent, initargs=(os.getpid(),)
        ) as pool:
            return pool.submit(_run_job, job).result()
    except BrokenProcessPool as exc:  # killed (out of memory) or crashed in native code
        return _JobResult(failed=f"the benchmark subprocess died ({exc})")


# --------------------------------------------------------------------------- planning rows


@dataclass
class _ModelRowSpec:
    backend: str
    device: str
    precision: str
    skipped: str | None = None


def plan_model_rows(
    backends: Sequence[str], precisions: Sequence[str], device: str, cuda_available: bool, providers: Sequence[str],
    cpu_bf16_unsupported: str | None = None,
) -> list[_ModelRowSpec]:
    """Which (backend, device, precision) rows to run, and which to list as skipped with a reason.

    ``auto`` precisions: torch fp32/bf16 on CPU, fp32/fp16/bf16 on CUDA; onnx fp32/int8 on the CPU
    provider, fp32/fp16 on a GPU provider (onnx_backend picks TensorRT where installed, else CUDA;
    the row records which ran). Precisions that cannot run (fp16 on CPU, bf16 on a CPU without bf16
    instructions, given as ``cpu_bf16_unsupported``, int8 outside ONNX Runtime on CPU) become
    skipped rows.
    """
    dev = device.strip().lower()
    if dev == "auto":
        devices = ["cpu"] + (["cuda"] if cuda_available else [])
    elif dev == "cpu" or dev.startswith("cuda"):
        devices = [dev]
    else:
        raise UsageError(f"--device {device!r}: choose auto, cpu, cuda or cuda:N")
    auto = "auto" in precisions
    specs: list[_ModelRowSpec] = []
    for backend in backends:
        for d in devices:
            on_cuda = d.startswith("cuda")
            if backend == "torch":
                natural = ["fp32", "fp16", "bf16"] if on_cuda else ["fp32", "bf16"]
                wanted = natural if auto else list(precisions)
                for p in wanted:
                    reason = None
                    if on_cuda and not cuda_available:
                        reason = f"{d}: no CUDA GPU here"
                    elif p == "int8":
                        reason = "int8 runs through ONNX Runtime (invrep export --int8), not torch"
                    elif p == "fp16" and not on_cuda:
                        reason = "fp16 is only run on CUDA, never on CPU"
                    elif p == "bf16" and not on_cuda and cpu_bf16_unsupported:
                        reason = f"bf16 on CPU: {cpu_bf16_unsupported}"
                    specs.append(_ModelRowSpec("torch", d, p, reason))
            elif backend == "onnx":
                natural = ["fp32", "fp16"] if on_cuda else ["fp32", "int8"]
                wanted = natural if auto else list(precisions)
                for p in wanted:
                    reason = None
                    if on_cuda and "CUDAExecutionProvider" not in providers:
                        reason = "ONNX Runtime has no CUDAExecutionProvider here"
                    elif on_cuda and not cuda_available:
                        reason = f"{d}: no CUDA GPU here"
                    elif p == "int8" and on_cuda:
                        reason = "int8 graphs are for the CPU provider here"
                    elif p == "fp16" and not on_cuda:
                        reason = "fp16 is only run on CUDA, never on CPU"
                    elif p == "bf16":
                        reason = "bf16 has no ONNX Runtime path here (fp32 or fp16 models only)"
                    specs.append(_ModelRowSpec("onnx", d, p, reason))
            else:
                raise UsageError(f"--backends: unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    return specs


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """What ran the bench: enough to compare numbers across machines."""
    import cv2
    import skimage
    import torch

    from invrep_cli import __version__

    info: dict[str, Any] = {
        "invrep": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "scikit_image": skimage.__version__,
    }
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = list(ort.get_available_providers())
    except ImportError:
        info["onnxruntime"] = None
        info["onnxruntime_providers"] = []
    try:
        from importlib.metadata import version

        info["bm3d"] = version("bm3d")
    except Exception:
        info["bm3d"] = None
    return info


# --------------------------------------------------------------------------- the bench


def _save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    from invrep_cli.fsutil import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _fill_row(
    row: BenchRow, result: _JobResult, cleans: list[np.ndarray], sigma: float, megapixels: float
) -> None:
    row.tile = result.tile
    if result.device:
        row.device = result.device
    if result.precision:
        row.precision = result.precision
    row.detail.update(result.detail)
    if result.skipped:
        row.skipped = result.skipped
        return
    if result.failed:
        row.failed = result.failed
        return
    outs = result.outputs[sigma]
    scores = [image_metrics(c, o) for c, o in zip(cleans, outs, strict=True)]
    row.psnr = float(np.mean([s[0] for s in scores]))
    row.ssim = float(np.mean([s[1] for s in scores]))
    row.detail["psnr_per_image"] = [round(s[0], 4) for s in scores]
    row.images = len(outs)
    row.megapixels = megapixels
    row.seconds = result.seconds[sigma]
    row.mp_per_s = megapixels / row.seconds if row.seconds > 0 else None
    row.peak_memory_mb = result.peak_bytes / 2**20 if result.peak_bytes is not None else None
    row.memory_method = result.memory_method


def _describe_weights(spec: str | None) -> tuple[Path, str, str]:
    """(path, display name, sha256 short) for a weights spec."""
    from invrep_cli.fsutil import sha256_file
    from invrep_cli.weights import resolve_weights

    path = Path(resolve_weights(spec))
    name = spec if spec and os.sep not in spec and not Path(spec).suffix else path.stem
    return path, name, sha256_file(path)[:12]


@dataclass
class _Inputs:
    """What every row restores and is scored against, in either mode."""

    names: list[str]
    #: uint8 images the rows are scored against: clean images, or the references of pairs
    references: list[np.ndarray]
    #: uint8 noisy images per sigma; pairs mode has one key, 0.0 (the noise is in the files)
    noisy: dict[float, list[np.ndarray]]
    image_info: list[dict[str, Any]]
    notes: list[str]
    pairs: bool = False
    #: pairs mode: each image's level (0-255) for the classical rows, by kind (see pairs.LEVELS)
    levels: dict[str, list[float]] = field(default_factory=dict)

    def folder(self, sigma: float) -> str:
        """Where --save-dir keeps this sigma's images (pairs mode: the folder itself)."""
        return "" if self.pairs else f"sigma{sigma:g}"


def _image_info(images: Sequence[tuple[str, np.ndarray]]) -> list[dict[str, Any]]:
    return [{"name": n, "height": int(a.shape[0]), "width": int(a.shape[1]),
             "channels": 1 if a.ndim == 2 else int(a.shape[2])} for n, a in images]


def _synthetic_inputs(config: BenchConfig, log: Callable[[str], None]) -> _Inputs:
    images, notes = load_clean_images(config.clean_dir, config.limit, config.gray)
    cleans = [a for _, a in images]
    sigmas = [float(s) for s in config.sigmas]
    noisy = {s: [add_noise(c, s, noise_seed(config.seed, i, s)) for i, c in enumerate(cleans)] for s in sigmas}
    megapixels = sum(a.shape[0] * a.shape[1] for a in cleans) / 1e6
    log(f"{len(cleans)} images, {megapixels:.3g} MP, sigma {', '.join(f'{s:g}' for s in sigmas)}")
    return _Inputs([n for n, _ in images], cleans, noisy, _image_info(images), notes)


def _pair_inputs(config: BenchConfig, log: Callable[[str], None]) -> _Inputs:
    from invrep_cli.pairs import load_pairs

    assert config.clean_dir is not None  # BenchConfig refuses pairs mode without a folder
    pairs, notes = load_pairs(config.clean_dir, config.noisy_pattern, config.ref_pattern, config.limit, config.gray)
    info = _image_info([(p.files.name, p.noisy) for p in pairs])
    for item, p in zip(info, pairs, strict=True):
        item.update(noisy=str(p.files.noisy), reference=str(p.files.reference),
                    sigma_estimated=round(p.sigma_estimated, 3), sigma_oracle=round(p.sigma_oracle, 3))
    levels = {"estimated": [p.sigma_estimated for p in pairs], "oracle": [p.sigma_oracle for p in pairs]}
    megapixels = sum(p.noisy.shape[0] * p.noisy.shape[1] for p in pairs) / 1e6
    log(f"{len(pairs)} pairs, {megapixels:.3g} MP, noise level (0-255) estimated {np.mean(levels['estimated']):.2f}, "
        f"oracle {np.mean(levels['oracle']):.2f} (means over pairs)")
    unmeasured = [p.files.name for p in pairs if p.sigma_estimated <= 0]
    if unmeasured:
        notes.append(f"the estimated noise level of {', '.join(unmeasured)} is 0 (no fine-scale variation): the "
                     "estimated rows leave those images as they are")
    notes.append("pairs: classical rows run once with each image's level estimated from the noisy image alone "
                 "(noise.estimate_sigma, as training's stage 1) and once with the oracle level std(noisy - reference): "
                 "a level a user does not have, so oracle rows are upper bounds, not results")
    return _Inputs([p.files.name for p in pairs], [p.reference for p in pairs], {0.0: [p.noisy for p in pairs]},
                   info, notes, pairs=True, levels=levels)


def run_bench(config: BenchConfig, log: Callable[[str], None] | None = None) -> BenchResult:
    """Noise the clean images (or read noisy/reference pairs), restore them with every method, score
    them; one row per method x sigma (pairs mode: per method x level for the classical methods)."""
    log = log or (lambda _msg: None)
    inputs = _pair_inputs(config, log) if config.pairs else _synthetic_inputs(config, log)
    cleans, noisy, notes = inputs.references, inputs.noisy, inputs.notes
    gray_flags = [a.ndim == 2 for a in cleans]
    megapixels = sum(a.shape[0] * a.shape[1] for a in cleans) / 1e6
    sigmas = list(noisy)

    machine = machine_info()
    rows: list[BenchRow] = []
    save_root = Path(config.save_dir) if config.save_dir else None
    if save_root is not None:
        _save_inputs(save_root, inputs)

    def save_outputs(label: str, outputs: dict[float, list[np.ndarray]]) -> None:
        # written as each job finishes, so restored images are not all held until the end
        if save_root is None:
            return
        for s, outs in outputs.items():
            for i, img in enumerate(outs):
                _save_png(save_root / inputs.folder(s) / _safe(label) / f"{i:03d}.png", img)

    def add_rows(template: BenchRow, result: _JobResult) -> None:
        for s in sigmas:
            row = dataclasses.replace(template, sigma=s, detail=dict(template.detail))
            _fill_row(row, result, cleans, s, megapixels)
            rows.append(row)
        if result.outputs and template.method != "noisy":
            save_outputs(template.label(), result.outputs)

    if "noisy" in config.baselines:
        add_rows(BenchRow(method="noisy", sigma=0.0), _JobResult(outputs=noisy, seconds={s: 0.0 for s in sigmas}))
        for r in rows:  # nothing was computed: no speed or memory to report
            r.mp_per_s = r.seconds = None
    for method in ("nlm", "bm3d"):
        if method not in config.baselines:
            continue
        # synthetic mode: one job at each sigma; pairs mode: one job per kind of per-image level
        for level, levels in list(inputs.levels.items()) or [(None, None)]:
            log(f"running {method}" + (f" at the {level} noise level" if level else ""))
            job = _Job(method=method, noisy=noisy, gray_flags=gray_flags, levels=levels)
            result = _execute(job, config.isolate)
            backend = "opencv" if method == "nlm" else "bm3d"
            template = BenchRow(method=method, sigma=0.0, backend=backend, device="cpu", precision="fp32",
                                noise_level=level, upper_bound=level == "oracle")
            if levels is not None:
                template.detail["sigma_per_image"] = [round(v, 3) for v in levels]
                template.detail["sigma_mean"] = round(float(np.mean(levels)), 3)
                if method == "nlm":
                    template.detail["h_per_image"] = [round(nlm_h(v, g), 2) for v, g in zip(levels, gray_flags,
                                                                                            strict=True)]
            elif method == "nlm":
                template.detail["h"] = {f"{s:g}": round(nlm_h(s, gray=False), 2) for s in sigmas}
                template.detail["h_gray"] = {f"{s:g}": round(nlm_h(s, gray=True), 2) for s in sigmas}
            add_rows(template, result)

    if config.backends:
        import torch

        from invrep_cli.devices import cpu_bf16_unsupported

        specs = plan_model_rows(config.backends, config.precisions, config.device, torch.cuda.is_available(),
                                machine.get("onnxruntime_providers", []), cpu_bf16_unsupported())
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            from invrep_cli.devices import resolve_device

            resolve_device(config.device)  # raises DeviceError: a required GPU is absent (exit 2)
        with tempfile.TemporaryDirectory(prefix="invrep-bench-") as tmp:
            for spec_w in config.weights:
                rows.extend(_model_rows(spec_w, specs, config, noisy, gray_flags, cleans, sigmas, megapixels,
                                        Path(tmp), log, save_outputs))

    order = {s: i for i, s in enumerate(sigmas)}
    # stable: method order kept within each sigma; upper bounds (pairs mode) after the real results
    rows.sort(key=lambda r: (order[r.sigma], r.upper_bound))
    if inputs.pairs:
        for r in rows:
            r.sigma = None
    notes.append("MP/s: input megapixels / seconds of the one-image restore call (compute + tiling, no file I/O); "
                 "network rows after one untimed warm-up image")
    return BenchResult(rows=rows, machine=machine, config=dataclasses.asdict(config), images=inputs.image_info,
                       notes=notes)


def _model_rows(
    spec_w: str | None,
    specs: list[_ModelRowSpec],
    config: BenchConfig,
    noisy: dict[float, list[np.ndarray]],
    gray_flags: list[bool],
    cleans: list[np.ndarray],
    sigmas: list[float],
    megapixels: float,
    tmp: Path,
    log: Callable[[str], None],
    on_outputs: Callable[[str, dict[float, list[np.ndarray]]], None],
) -> list[BenchRow]:
    try:
        weights_path, wname, wsha = _describe_weights(spec_w)
    except WeightsError as exc:
        if spec_w is not None:
            raise  # weights the user named must exist: a usage error (exit 2)
        # the bundled default is missing (e.g. a wheel without it): the baselines still run
        return [BenchRow(method="invrep", sigma=s, weights="default", skipped=f"no default weights ({exc})")
                for s in sigmas]
    is_onnx = weights_path.suffix.lower() == ".onnx"
    # precision -> exported file, or the reason export failed; ONNX weights are used as they are
    onnx_files: dict[str, Path | str] = {p: weights_path for p in PRECISIONS} if is_onnx else {}
    collected: list[BenchRow] = []
    for spec in specs:
        template = BenchRow(method="invrep", sigma=0.0, backend=spec.backend, device=spec.device,
                            precision=spec.precision, weights=wname, weights_sha256=wsha, tile=config.tile,
                            strength=config.strength, self_ensemble=config.self_ensemble)
        result: _JobResult
        if spec.skipped:
            result = _JobResult(skipped=spec.skipped)
        elif spec.backend == "torch" and is_onnx:
            result = _JobResult(skipped="weights are ONNX; the torch backend needs .safetensors or .pt weights")
        else:
            path: Path | str = weights_path
            if spec.backend == "onnx":
                if spec.precision not in onnx_files:
                    out = tmp / f"{_safe(wname)}-{spec.precision}.onnx"
                    onnx_files[spec.precision] = _export_for_bench(weights_path, out, spec.precision, config, tmp)
                path = onnx_files[spec.precision]
            if isinstance(path, str):
                result = _JobResult(skipped=path)
            else:
                log(f"running invrep {wname} {spec.backend} {spec.device} {spec.precision}")
                job = _Job(method="model", noisy=noisy, gray_flags=gray_flags, weights_path=str(path),
                           backend=spec.backend, device=spec.device, precision=spec.precision, tile=config.tile,
                           threads=config.threads, strength=config.strength,
                           self_ensemble=config.self_ensemble)
                result = _execute(job, config.isolate)
        for s in sigmas:
            row = dataclasses.replace(template, sigma=s, detail={})
            _fill_row(row, result, cleans, s, megapixels)
            collected.append(row)
        if result.outputs:
            on_outputs(collected[-1].label(), result.outputs)
    return collected


def _export_for_bench(weights: Path, out: Path, precision: str, config: BenchConfig, tmp: Path) -> Path | str:
    """Export once per weights and precision; returns the .onnx path, or why it could not be made.

    int8 is calibrated on ``config.calibrate`` (default: scikit-image photos that are not bench
    images) with noise at the middle bench sigma, never on the images being scored.
    """
    try:
        from invrep_cli.export import export_onnx
        from invrep_cli.quantize import Calibration
    except ImportError as exc:
        return f"ONNX export is not available ({exc})"
    try:
        calibration = None
        if precision == "int8":
            folder = config.calibrate or str(_calibration_photos(tmp / "calibration"))
            sigma = sorted(config.sigmas)[len(config.sigmas) // 2]
            calibration = Calibration(folder, sigma=float(sigma), seed=config.seed)
        # no PSNR floor here: the row's own PSNR against the clean images shows what int8 costs
        export_onnx(weights, out, opset=17, fp16=precision == "fp16", calibration=calibration, min_psnr=0.0,
                    threads=config.threads)
    except Exception as exc:  # an export problem skips the ONNX rows, not the bench
        return f"ONNX export failed ({type(exc).__name__}: {exc})"
    return out


def _calibration_photos(folder: Path) -> Path:
    """The two scikit-image photos NLM's h was tuned on (not bench images), as PNG files in ``folder``."""
    import skimage.data

    if not folder.is_dir():
        for name, image in (("rocket", skimage.data.rocket()), ("motorcycle", skimage.data.stereo_motorcycle()[0])):
            _save_png(folder / f"{name}.png", image)
    return folder


def _save_inputs(root: Path, inputs: _Inputs) -> None:
    """Clean (or reference) and noisy images as PNG, and index.txt saying which number is which input."""
    for i, clean in enumerate(inputs.references):
        _save_png(root / ("reference" if inputs.pairs else "clean") / f"{i:03d}.png", clean)
    for s, images in inputs.noisy.items():
        for i, img in enumerate(images):
            _save_png(root / inputs.folder(s) / "noisy" / f"{i:03d}.png", img)
    (root / "index.txt").write_text("".join(f"{i:03d}\t{n}\n" for i, n in enumerate(inputs.names)), encoding="utf-8")
