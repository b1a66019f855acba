"""Restorer throughput, ONNX Runtime CPU vs PyTorch CPU, in megapixels per second.

    .venv/bin/python benchmarks/onnx_vs_torch.py --threads 2 --size 512 --runs 3

Random-init weights (speed does not depend on training). Each backend gets one warm-up run, then
``--runs`` timed runs on the same 1 x 3 x size x size input; the best and median are printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from invrep_cli.checkpoint import save_restorer
from invrep_cli.config import MODEL_PRESETS
from invrep_cli.export import export_onnx
from invrep_cli.models import build_restorer
from invrep_cli.onnx_backend import OnnxBackend


def _time(fn, runs: int) -> list[float]:
    fn()  # warm-up: allocations, ORT graph optimisation, oneDNN kernel selection
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["lir", "lir-lite"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fp16", action="store_true", help="also export fp16 and report its parity (not timed)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    megapixels = args.size * args.size / 1e6
    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    print(f"torch {torch.__version__}, {args.threads} threads, input 1x3x{args.size}x{args.size}, {args.runs} runs")
    print(f"{'model':10} {'backend':10} {'best MP/s':>10} {'median MP/s':>12}  seconds per run")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch.manual_seed(0)
            restorer = build_restorer(MODEL_PRESETS[name]).eval()
            weights = save_restorer(restorer, Path(tmp) / f"{name}.safetensors")
            onnx_path = Path(tmp) / f"{name}.onnx"
            export_onnx(weights, onnx_path, threads=args.threads)
            backend = OnnxBackend(onnx_path, device="cpu", threads=args.threads)
            tensor = torch.from_numpy(x)

            def run_torch(restorer=restorer, tensor=tensor) -> None:
                with torch.inference_mode():
                    restorer(tensor)

            onnx_label = f"onnx ({backend.device.replace('ExecutionProvider', '')})"
            timings = {"torch": _time(run_torch, args.runs), onnx_label: _time(lambda b=backend: b.run(x), args.runs)}
            for label, secs in timings.items():
                best, median = megapixels / min(secs), megapixels / statistics.median(secs)
                print(f"{name:10} {label:10} {best:10.3f} {median:12.3f}  " + " ".join(f"{s:.3f}" for s in secs))
            if args.fp16:
                report = export_onnx(weights, Path(tmp) / f"{name}-fp16.onnx", fp16=True, threads=args.threads)
                skipped = report["parity_skipped"]
                print(f"{name:10} fp16 parity vs fp32 torch: {report['max_abs_diff']} skipped={skipped}")


if __name__ == "__main__":
    main()
