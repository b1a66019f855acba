"""Restore throughput against tile size on CPU: what the automatic CPU tile is based on.

    .venv/bin/python benchmarks/tile_speed.py --threads 2 --size 1024 --tiles 128,256,384,512,0 --runs 3 \
        --calibrate ../shared/data/CBSD432 > runs/measure/tile_speed.json

One size x size image (random: speed does not depend on content) is restored through
``restore.restore_pixels`` with the weights' own context margin and restore's default overlap, at
each tile size (0 = the whole image in one call), for torch fp32, torch bf16 (where the CPU has
bf16) and ONNX Runtime fp32 and int8. Every (path, tile) runs once per round, interleaved, after a
warm-up; the median of ``--runs`` rounds is reported. Small tiles pay for their context margin
(each tile computes margin + overlap pixels it throws away: ``useful`` is the share of computed
pixels kept); large ones leave the caches, so the best tile is measured, not guessed. Memory per
tile size is ``benchmarks/peak_memory.py``'s business (in-process figures here would be hidden by
allocator caches left by the previous call).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from invrep_cli.backends import Backend, make_backend
from invrep_cli.devices import cpu_bf16_unsupported
from invrep_cli.export import export_onnx
from invrep_cli.quantize import Calibration
from invrep_cli.restore import restore_pixels
from invrep_cli.weights import resolve_weights

OVERLAP = 16  # restore's default --tile-overlap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="weights spec (default: the bundled model)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tiles", default="128,256,384,512,0")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--calibrate", required=True, help="folder of images for the int8 calibration")
    parser.add_argument("--paths", default="torch fp32,torch bf16,onnx fp32,onnx int8")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    weights = resolve_weights(args.weights)
    tiles = [int(t) for t in args.tiles.split(",")]
    wanted = [p.strip() for p in args.paths.split(",")]
    image = np.random.default_rng(0).random((args.size, args.size, 3), dtype=np.float32)
    megapixels = args.size * args.size / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        backends: dict[str, Backend] = {}
        if "torch fp32" in wanted:
            backends["torch fp32"] = make_backend(weights, "torch", "cpu", "fp32", args.threads)
        if "torch bf16" in wanted and not cpu_bf16_unsupported():
            backends["torch bf16"] = make_backend(weights, "torch", "cpu", "bf16", args.threads)
        for precision in ("fp32", "int8"):
            if f"onnx {precision}" not in wanted:
                continue
            graph = Path(tmp) / f"{precision}.onnx"
            calibration = Calibration(args.calibrate, sigma=25.0) if precision == "int8" else None
            export_onnx(weights, graph, calibration=calibration, threads=args.threads)
            backends[f"onnx {precision}"] = make_backend(graph, "onnx", "cpu", "auto", args.threads)

        def call(name: str, tile: int) -> None:
            restore_pixels(image, backends[name], tile=tile, overlap=OVERLAP)

        for name in backends:
            call(name, tiles[0])  # warm-up
        seconds: dict[tuple[str, int], list[float]] = {(n, t): [] for n in backends for t in tiles}
        for _ in range(args.runs):
            for name in backends:
                for tile in tiles:
                    start = time.perf_counter()
                    call(name, tile)
                    seconds[(name, tile)].append(time.perf_counter() - start)

    rows = []
    for name in backends:
        margin = backends[name].context_margin
        for tile in tiles:
            rate = megapixels / statistics.median(seconds[(name, tile)])
            side = tile + OVERLAP + 2 * margin if tile else args.size
            # paired within each round (steadier than a ratio of medians on a shared machine)
            whole = seconds[(name, tiles[-1])]
            vs_last = statistics.median(w / t for w, t in zip(whole, seconds[(name, tile)], strict=True))
            rows.append({"path": name, "tile": tile, "context_margin": margin, "mp_per_s": round(rate, 4),
                         f"vs_tile_{tiles[-1]}": round(vs_last, 3),
                         "useful": round(min(1.0, (tile or args.size) ** 2 / side**2), 3),
                         "each_run": [round(megapixels / t, 4) for t in seconds[(name, tile)]]})
    best = {name: max((r for r in rows if r["path"] == name), key=lambda r: r["mp_per_s"])["tile"] for name in backends}
    print(json.dumps({"weights": str(weights), "size": args.size, "threads": args.threads, "runs": args.runs,
                      "overlap": OVERLAP, "load_average_after": os.getloadavg(), "best_tile": best, "rows": rows},
                     indent=1))


if __name__ == "__main__":
    main()
