"""ONNX export of the restorer G_Y(E_X(x)) and its parity check against PyTorch.

Decisions:
- Exporter: opset < 18 uses the TorchScript exporter (``dynamo=False``), opset >= 18 the dynamo
  exporter. Both keep batch, height and width dynamic, including the restorer's pad-to-a-multiple
  arithmetic (``Mod``/``Sub`` on ``Shape``); the parity check runs at sizes other than the traced one,
  odd ones included, so a graph that froze a size fails. The dynamo exporter cannot write opset 17
  (no Pad down-converter), and opset 17 is the one older runtimes (ORT >= 1.13, TensorRT 8.6) read,
  hence the default.
- Smallest input: the graph holds the reflect-padding branch the restorer takes for H, W >
  size_multiple (metadata ``min_size``); OnnxBackend edge-pads smaller inputs.
- fp16: the restorer is cast with ``.half()`` inside a wrapper that casts the input to float16 and the
  output back to float32, so weights (FLOAT16 initializers) and compute are fp16 while the graph's
  input and output stay float32 (callers need not know). Parity compares it with the fp32 PyTorch
  model, with a looser tolerance; where no available provider runs it the check is reported as
  skipped with the reason, never passed.
- int8 (``quantize.py``): the fp32 graph is exported and checked against PyTorch as above, then
  statically quantized with ONNX Runtime's tools, calibrated on crops of a folder of images; its
  parity is PSNR against the fp32 graph (at least ``min_psnr`` dB, else no file is kept), stored in
  the metadata beside the calibration settings (``precision`` int8, ``quantization``).
- The file is written atomically and only kept when the parity check passes: on failure it is
  deleted (a previous file at the same path is left as it was) and ExportError is raised.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from invrep_cli import __version__
from invrep_cli.checkpoint import load_restorer
from invrep_cli.errors import ExportError, InvrepError, UsageError
from invrep_cli.fsutil import atomic_path, remove_leftovers, sha256_file
from invrep_cli.models import Restorer, receptive_field
from invrep_cli.onnx_backend import GRAPH_DIGEST_KEY, graph_digest
from invrep_cli.quantize import Calibration

ONNX_FORMAT = "invrep-onnx/1"
INPUT_NAME = "image"
OUTPUT_NAME = "restored"
DEFAULT_OPSET = 17
DEFAULT_CHECK_SIZES: tuple[tuple[int, int, int, int], ...] = ((1, 3, 37, 53), (1, 3, 64, 64), (2, 3, 97, 31))
FP32_TOLERANCE = 1e-4
# fp16 keeps ~3 decimal digits through ~20 convolutions; 1e-2 is 2.5 grey levels of 8-bit output
FP16_TOLERANCE = 1e-2
# int8 against the fp32 graph: the bundled restorer gives 42.6 dB; 35 dB is an RMS error of 4.5 grey
# levels in 255, where quantization noise would start to show beside what the model removes
INT8_MIN_PSNR = 35.0
# the size the graph is traced at: odd in both dimensions, so the pad amounts are non-zero
_TRACE_SIZE = (1, 3, 45, 67)


class _Fp16Restorer(nn.Module):
    """float32 in -> fp16 restorer -> float32 out, so the exported graph's interface stays float32."""

    def __init__(self, restorer: Restorer) -> None:
        super().__init__()
        self.restorer = restorer.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.restorer(x.half()).float()


def context_margin(restorer: Restorer, meta: dict[str, Any]) -> int:
    """Pixels of context a tile needs: the weights' own value, else half the receptive field rounded
    up to the size multiple."""
    if "context_margin" in meta:
        return int(meta["context_margin"])
    m = restorer.size_multiple
    half = math.ceil(receptive_field(restorer.config) / 2)
    return int(math.ceil(half / m) * m)


def _export_graph(module: nn.Module, path: Path, opset: int, min_size: int) -> str:
    """Write ``module`` to ``path`` with dynamic batch, height and width; returns the exporter used.

    The exporters print progress on stdout and tracer warnings on stderr; both are kept out of the
    CLI's output (stdout may be --json). A real failure still raises.
    """
    torch_onnx_log = logging.getLogger("torch.onnx")
    level = torch_onnx_log.level
    torch_onnx_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _run_exporter(module, path, opset, min_size)
    finally:
        torch_onnx_log.setLevel(level)


def _run_exporter(module: nn.Module, path: Path, opset: int, min_size: int) -> str:
    example = torch.rand(*_TRACE_SIZE)
    names = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}
    if opset < 18:
        axes = {0: "batch", 2: "height", 3: "width"}
        torch.onnx.export(
            module, (example,), str(path), dynamo=False, opset_version=opset,
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}, do_constant_folding=True, **names,
        )
        return "torchscript"
    dims = {
        0: torch.export.Dim("batch", min=1, max=4096),
        2: torch.export.Dim("height", min=min_size, max=65536),
        3: torch.export.Dim("width", min=min_size, max=65536),
    }
    program = torch.onnx.export(
        module, (example,), dynamo=True, opset_version=opset, dynamic_shapes={"x": dims}, verbose=False, **names,
    )
    if program is None:
        raise ExportError("the dynamo exporter returned no program")
    program.save(str(path))
    return "dynamo"


def _write_metadata(path: Path, props: dict[str, str]) -> int:
    """Add metadata_props to the ONNX file in place; returns the opset actually written."""
    import onnx

    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    # the digest of what this file finally holds (int8: of the quantized graph, not the fp32 one)
    for key, value in {**props, GRAPH_DIGEST_KEY: graph_digest(model)}.items():
        entry = existing.get(key) or model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "invrep"
    model.producer_version = __version__
    onnx.save(model, str(path))
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _check_inputs(sizes: Sequence[Sequence[int]], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random(tuple(int(d) for d in size), dtype=np.float32) for size in sizes]


def check_parity(
    onnx_path: str | os.PathLike[str],
    restorer: Restorer,
    sizes: Sequence[Sequence[int]] = DEFAULT_CHECK_SIZES,
    tol: float = FP32_TOLERANCE,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the ONNX file in ONNX Runtime and the fp32 PyTorch restorer on the same random inputs.

    Returns {"provider", "passed", "skipped" (reason or None), "results": [{"size", "max_abs_diff",
    "ok"}]}. A non-finite output counts as an infinite difference. Never raises on a mismatch; the
    caller decides (export_onnx raises ExportError).
    """
    from invrep_cli.onnx_backend import CPU, make_session

    restorer = restorer.float().eval()
    try:
        session, provider = make_session(onnx_path, "cpu", threads)
        runs: list[tuple[np.ndarray, np.ndarray]] = []
        for x in _check_inputs(sizes, seed):
            runs.append((x, session.run(None, {session.get_inputs()[0].name: x})[0]))
    except Exception as cpu_exc:  # CPU ORT lacks some fp16 kernels; try a GPU provider if there is one
        try:
            session, provider = make_session(onnx_path, "cuda", threads)
            runs = [(x, session.run(None, {session.get_inputs()[0].name: x})[0]) for x in _check_inputs(sizes, seed)]
        except Exception as gpu_exc:
            reason = f"no ONNX Runtime provider runs this graph: {CPU}: {cpu_exc}; GPU: {gpu_exc}"
            return {"provider": None, "passed": False, "skipped": reason, "results": []}
    results = []
    with torch.no_grad():
        for x, y in runs:
            ref = restorer(torch.from_numpy(x)).numpy()
            y = np.asarray(y, dtype=np.float32)
            if y.shape != ref.shape or not np.isfinite(y).all():
                diff = math.inf
            else:
                diff = float(np.abs(y - ref).max())
            results.append({"size": list(x.shape), "max_abs_diff": diff, "ok": diff <= tol})
    return {"provider": provider, "passed": all(r["ok"] for r in results), "skipped": None, "results": results}


def _quantize_into(
    out: Path,
    fp32_graph: Path,
    calibration: Calibration,
    min_psnr: float,
    props: dict[str, str],
    report: dict[str, Any],
    say: Callable[[str], None],
    threads: int | None,
) -> None:
    """Quantize the checked fp32 graph into ``out``, measure it against the fp32 graph, label it int8."""
    from invrep_cli.quantize import int8_parity, quantize_graph

    say(f"quantizing to int8, calibrated on {calibration.crops} crops of {calibration.folder}")
    try:
        settings = quantize_graph(fp32_graph, out, calibration, INPUT_NAME)
    except InvrepError:
        raise
    except Exception as exc:
        raise ExportError(f"int8 quantization failed ({type(exc).__name__}: {exc})") from exc
    say("checking the int8 graph against the fp32 graph in ONNX Runtime")
    parity = int8_parity(out, fp32_graph, calibration, threads)
    summary = {key: parity[key] for key in ("psnr_db", "min_psnr_db", "max_abs_diff", "inputs", "size")}
    props.update(precision="int8", quantization=json.dumps(settings), int8_parity=json.dumps(summary))
    report.update(quantization=settings, int8_parity=parity | {"min_psnr_required": min_psnr})
    report["opset"] = _write_metadata(out, props)
    if not parity["finite"] or parity["psnr_db"] < min_psnr:
        error = ExportError(
            f"the int8 graph is {parity['psnr_db']:.1f} dB PSNR against the fp32 graph (required {min_psnr:g}); "
            f"the new graph was discarded ({report['path']} left as it was)"
        )
        error.report = report  # type: ignore[attr-defined]
        raise error


def export_onnx(
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str],
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    check_sizes: Sequence[Sequence[int]] = DEFAULT_CHECK_SIZES,
    tol: float | None = None,
    *,
    calibration: Calibration | None = None,
    min_psnr: float = INT8_MIN_PSNR,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Export the restorer in ``weights`` (.safetensors or train .pt) to ``out`` and check it.

    ``calibration`` makes an int8 graph (see the module docstring). Returns {"path", "opset",
    "fp16", "precision", "exporter", "tolerance", "provider", "parity_skipped", "sizes",
    "max_abs_diff" (per "NxCxHxW" size), "checks", "seconds", "file_size", "sha256", "metadata"},
    and for int8 "quantization" and "int8_parity" (PSNR against the fp32 graph). Raises
    WeightsError for unusable weights, UsageError for bad options and ExportError when the export
    fails, any size is over tolerance or int8 parity is under ``min_psnr`` (no file is then kept).
    """
    start = time.perf_counter()
    say = progress or (lambda _msg: None)
    if opset < 13:
        raise UsageError(f"--opset {opset}: the restorer needs opset 13 or newer (17 recommended)")
    if not check_sizes:
        raise UsageError("at least one parity check size is needed")
    for size in check_sizes:
        if len(size) != 4 or size[1] != 3 or min(size) < 1:
            raise UsageError(f"check size {tuple(size)}: expected (N, 3, H, W)")
    if calibration is not None and fp16:
        raise UsageError("--int8 and --fp16 exclude each other: int8 is quantized from the fp32 graph")
    if calibration is not None and calibration.crops < 1:
        raise UsageError(f"--calibration-crops {calibration.crops}: must be >= 1")
    int8 = calibration is not None
    precision = "int8" if int8 else "fp16" if fp16 else "fp32"
    tol = (FP16_TOLERANCE if fp16 else FP32_TOLERANCE) if tol is None else float(tol)
    out = Path(out)
    if Path(weights).suffix.lower() == ".onnx":
        raise UsageError(f"{weights} is already an ONNX graph; export needs .safetensors or .pt weights")
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"--onnx {out}: the output file name must end in .onnx")

    restorer, meta = load_restorer(weights)
    if restorer.config.level_input:
        # the graph would need the level as a second input, and ONNX restore to read it per image
        raise UsageError(
            f"{weights} is a conditioned restorer (trained with --level-input); ONNX export takes blind "
            "restorers only: restore it with --backend torch"
        )
    min_size = restorer.size_multiple + 1
    if calibration is not None and calibration.crop_size - 3 < min_size:
        raise UsageError(f"--calibration-size {calibration.crop_size}: must be >= {min_size + 3}")
    small = [tuple(s) for s in check_sizes if min(s[2], s[3]) < min_size]
    if small:
        raise UsageError(f"check sizes {small}: the ONNX graph takes H, W >= {min_size}")
    margin = context_margin(restorer, meta)
    module: nn.Module = _Fp16Restorer(copy.deepcopy(restorer)) if fp16 else restorer
    props = {
        "format": ONNX_FORMAT,
        "model_config": json.dumps(restorer.config.to_dict()),
        "input_range": "[0,1]",
        "input_layout": "NCHW RGB",
        "io_dtype": "float32",
        "size_multiple": str(restorer.size_multiple),
        "min_size": str(min_size),
        "context_margin": str(margin),
        "receptive_field": str(receptive_field(restorer.config)),
        "weights_sha256": str(meta["sha256"]),
        "weights_file": Path(weights).name,
        "invrep_version": __version__,
        "torch_version": torch.__version__,
        "precision": "fp16" if fp16 else "fp32",
    }

    remove_leftovers([out])  # a killed earlier export's hidden temporary (as large as the graph)
    with atomic_path(out) as tmp, tempfile.TemporaryDirectory(prefix="invrep-export-") as work:
        # int8: the fp32 graph is made and checked first, then quantized into the output file
        graph = Path(work) / "fp32.onnx" if int8 else tmp
        say(f"exporting {Path(weights).name} (opset {opset}{', fp16' if fp16 else ''})")
        try:
            with torch.no_grad():
                exporter = _export_graph(module.eval(), graph, opset, min_size)
        except Exception as exc:
            raise ExportError(f"ONNX export failed ({type(exc).__name__}: {exc})") from exc
        props["exporter"] = exporter
        written_opset = _write_metadata(graph, props)
        if written_opset != opset:
            raise ExportError(
                f"the {exporter} exporter wrote opset {written_opset}, not {opset}; use --opset {written_opset}"
            )
        say("checking against PyTorch in ONNX Runtime")
        parity = check_parity(graph, restorer, check_sizes, tol, threads=threads)
        report: dict[str, Any] = {
            "path": str(out),
            "opset": written_opset,
            "fp16": fp16,
            "precision": precision,
            "exporter": exporter,
            "tolerance": tol,
            "provider": parity["provider"],
            "parity_skipped": parity["skipped"],
            "sizes": [list(s) for s in check_sizes],
            "max_abs_diff": {"x".join(map(str, r["size"])): r["max_abs_diff"] for r in parity["results"]},
            "checks": parity["results"],
        }
        if parity["skipped"] is None and not parity["passed"]:
            worst = max(parity["results"], key=lambda r: r["max_abs_diff"])
            error = ExportError(
                f"ONNX output differs from PyTorch by {worst['max_abs_diff']:.3g} at "
                f"{'x'.join(map(str, worst['size']))} (tolerance {tol:g}); "
                f"the new graph was discarded ({out} left as it was)"
            )
            error.report = report  # type: ignore[attr-defined]
            raise error
        if parity["skipped"] is not None and not fp16:
            # an fp32 graph the CPU provider cannot run is broken, not untestable
            raise ExportError(f"parity check could not run: {parity['skipped']}")
        if calibration is not None:
            _quantize_into(tmp, graph, calibration, min_psnr, props, report, say, threads)
    report.update(
        seconds=round(time.perf_counter() - start, 3),
        file_size=out.stat().st_size,
        sha256=sha256_file(out),
        metadata=props,
    )
    return report
