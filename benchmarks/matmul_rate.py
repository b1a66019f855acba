"""This machine's fp32 matmul rate with torch, and the restore speed it allows at best.

    python benchmarks/matmul_rate.py [--size 2048] [--threads N] [--device cpu|cuda] [--seconds 3]

Prints one JSON object: GFLOP/s of an N x N fp32 matmul (best of repeated runs, 2 N^3 FLOP each),
the threads torch used, and for each restorer preset its cost (conv multiply-adds per pixel, counted
by forward hooks in invrep_cli.bench.restorer_macs_per_pixel) and "achievable MP/s at 100% of matmul
rate" = GFLOP/s / (2 x MACs per pixel / 1e3). A convolution runs below the matmul rate (im2col,
memory traffic, small channel counts), so `invrep bench` MP/s divided by this figure is the fraction
of the hardware the restorer reaches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from invrep_cli.bench import restorer_macs_per_pixel
from invrep_cli.config import MODEL_PRESETS


def matmul_gflops(size: int, device: torch.device, seconds: float) -> tuple[float, int]:
    """Best GFLOP/s over repeated size x size fp32 matmuls for about ``seconds``; returns (rate, runs)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    out = torch.empty(size, size, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):  # warm-up: thread pool start, cuBLAS handle, page faults on the buffers
        torch.mm(a, b, out=out)
    sync()
    best, runs, deadline = float("inf"), 0, time.perf_counter() + seconds
    while runs < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        sync()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return 2.0 * size**3 / best / 1e9, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="matrix side (default 2048)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time to spend measuring (default 3)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # TF32 would report a tensor-core rate that fp32 restoration does not get by default
    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device(args.device)
    gflops, runs = matmul_gflops(args.size, device, args.seconds)
    presets = {}
    for name, cfg in MODEL_PRESETS.items():
        macs = restorer_macs_per_pixel(cfg)
        gflop_per_mp = 2.0 * macs / 1e3  # 2 FLOP per MAC, 1e6 pixels per MP, 1e9 FLOP per GFLOP
        presets[name] = {
            "macs_per_pixel": macs,
            "gflop_per_megapixel": round(gflop_per_mp, 1),
            "achievable_mp_per_s_at_100pct_matmul": round(gflops / gflop_per_mp, 4),
        }
    print(json.dumps({
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "size": args.size,
        "runs": runs,
        "matmul_fp32_gflops": round(gflops, 1),
        "presets": presets,
    }, indent=2))


if __name__ == "__main__":
    main()
