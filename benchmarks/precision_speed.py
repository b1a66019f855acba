"""Restore throughput of one weights file at fp32, bf16 and int8 on CPU, in megapixels per second.

    .venv/bin/python benchmarks/precision_speed.py --threads 2 --size 512 --runs 7 \
        --calibrate ../shared/data/CBSD432 --calibration-sigma 25 > runs/measure/precision_speed.json

Paths timed, each on the same 1 x 3 x size x size input through the backends ``invrep restore``
uses (one whole-image call, no tiling, so only the arithmetic differs):
- torch fp32 (the default on CPU, channels_last), and fp32 in the contiguous layout restore used
  before (to see what layout alone gives);
- torch bf16 (``--precision bf16``: bf16 weights, channels_last), where the CPU has bf16;
- ONNX Runtime fp32 and int8 (``invrep export --int8``, calibrated on ``--calibrate``).
The paths run interleaved, one call each per round, so a machine shared with other work slows
them alike; after one warm-up call each, ``--runs`` rounds are timed and the median is reported.
Speed-ups are paired: the median over rounds of (fp32 seconds / path seconds) within the same
round, against torch fp32 and against ORT fp32, which is steadier than a ratio of medians when
other work comes and goes. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from invrep_cli.backends import make_backend
from invrep_cli.devices import cpu_bf16_unsupported
from invrep_cli.export import export_onnx
from invrep_cli.quantize import Calibration
from invrep_cli.weights import resolve_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="weights spec (default: the bundled model)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--calibrate", required=True, help="folder of images for the int8 calibration")
    parser.add_argument("--calibration-sigma", type=float, default=25.0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    weights = resolve_weights(args.weights)
    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    megapixels = args.size * args.size / 1e6
    paths: dict[str, Callable[[], object]] = {}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = make_backend(weights, "torch", "cpu", "fp32", args.threads)
        paths["torch fp32"] = lambda: fp32.run(x)
        layout = make_backend(weights, "torch", "cpu", "fp32", args.threads)
        layout.model = layout.model.to(memory_format=torch.contiguous_format)
        layout.memory_format = torch.contiguous_format
        paths["torch fp32 contiguous"] = lambda: layout.run(x)
        if reason := cpu_bf16_unsupported():
            notes["torch bf16"] = reason
        else:
            bf16 = make_backend(weights, "torch", "cpu", "bf16", args.threads)
            paths["torch bf16"] = lambda: bf16.run(x)
        graphs = {"fp32": Path(tmp) / "fp32.onnx", "int8": Path(tmp) / "int8.onnx"}
        export_onnx(weights, graphs["fp32"], threads=args.threads)
        calibration = Calibration(args.calibrate, sigma=args.calibration_sigma)
        report = export_onnx(weights, graphs["int8"], calibration=calibration, threads=args.threads)
        ort = {p: make_backend(graphs[p], "onnx", "cpu", "auto", args.threads) for p in graphs}
        paths["onnx fp32"] = lambda: ort["fp32"].run(x)
        paths["onnx int8"] = lambda: ort["int8"].run(x)

        for run in paths.values():
            run()  # warm-up: allocations, oneDNN kernel choice, ORT graph optimisation
        seconds: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.runs):
            for name, run in paths.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)

    rates = {name: megapixels / statistics.median(s) for name, s in seconds.items()}

    def paired(base: str) -> dict[str, float]:
        return {name: round(statistics.median(b / t for b, t in zip(seconds[base], s, strict=True)), 3)
                for name, s in seconds.items()}

    result = {
        "weights": str(weights),
        "size": args.size,
        "threads": args.threads,
        "runs": args.runs,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_after": os.getloadavg(),
        "int8_psnr_vs_fp32_graph": report["int8_parity"]["psnr_db"],
        "calibration": report["quantization"]["calibration"],
        "skipped": notes,
        "mp_per_s": {name: round(rate, 4) for name, rate in rates.items()},
        "mp_per_s_each_run": {name: [round(megapixels / t, 4) for t in s] for name, s in seconds.items()},
        "vs_torch_fp32": paired("torch fp32"),
        "vs_onnx_fp32": paired("onnx fp32"),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
