#!/usr/bin/env bash
# Issue 12's figures: fp32, bf16 and int8 speed and quality of the bundled default weights on CPU.
# Re-run it whenever the default model changes (about 10 minutes on 2 cores); outputs land in
# runs/measure/, and the last step prints the README table. THREADS defaults to every core.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
M=runs/measure
D=../shared/data
THREADS=${THREADS:-$(nproc)}
mkdir -p "$M"
# speed: one 512x512 image, whole-image calls, paths interleaved, median of 7 rounds
$BIN/python benchmarks/precision_speed.py --threads "$THREADS" --size 512 --runs 7 \
  --calibrate "$D/CBSD432" --calibration-sigma 25 > "$M/precision_speed.json"
# quality, peak memory and speed through restore's own tiling: the first 12 CBSD68 images at sigma 25;
# the int8 graph is calibrated on noisy crops of CBSD432 (the training images), never on CBSD68
$BIN/invrep bench "$D/CBSD68" --limit 12 --sigma 25 --baselines noisy --backends torch,onnx \
  --precisions fp32,bf16,int8 --calibrate "$D/CBSD432" --threads "$THREADS" --json > "$M/precision_bench.json"
# MP/s against tile size (the automatic CPU tile comes from this)
$BIN/python benchmarks/tile_speed.py --threads "$THREADS" --size 768 --tiles 128,256,384,512,0 --runs 3 \
  --calibrate "$D/CBSD432" > "$M/tile_speed.json"
$BIN/python - "$M/precision_speed.json" "$M/precision_bench.json" "$M/tile_speed.json" <<'EOF'
import json
import sys

speed, bench, tiles = (json.load(open(p)) for p in sys.argv[1:4])
rows = {(r["backend"], r["precision"]): r for r in bench["rows"] if r["method"] == "invrep"}
print(f"weights {speed['weights']}, {speed['threads']} threads, 512x512 median of {speed['runs']}; "
      f"load average after: {', '.join(f'{x:.1f}' for x in speed['load_average_after'])}")
print("| path | MP/s 512x512 | vs fp32 of its backend | MP/s CBSD68 (tiled) | peak MB | PSNR sigma 25 | vs fp32 |")
print("|---|---|---|---|---|---|---|")
for backend, precision in (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8")):
    name = f"{backend} {precision}"
    row = rows.get((backend, precision), {})
    base = rows.get((backend, "fp32"), {})
    rate = speed["mp_per_s"].get(name)
    ratio = speed["vs_torch_fp32" if backend == "torch" else "vs_onnx_fp32"].get(name)
    delta = row["psnr"] - base["psnr"] if row.get("psnr") is not None and base.get("psnr") is not None else None
    cells = [name, f"{rate:.3f}" if rate else row.get("skipped") or "-", f"{ratio:.2f}x" if ratio else "-",
             f"{row['mp_per_s']:.3f}" if row.get("mp_per_s") else "-",
             f"{row['peak_memory_mb']:.0f}" if row.get("peak_memory_mb") else "-",
             f"{row['psnr']:.3f}" if row.get("psnr") is not None else "-",
             f"{delta:+.3f} dB" if delta is not None else "-"]
    print("| " + " | ".join(cells) + " |")
print(f"int8 graph vs fp32 graph: {speed['int8_psnr_vs_fp32_graph']:.1f} dB PSNR (held-out CBSD432 crops)")
paths = list(dict.fromkeys(r["path"] for r in tiles["rows"]))
print(f"MP/s against tile size ({tiles['size']}x{tiles['size']}, overlap {tiles['overlap']}, median of {tiles['runs']}; "
      "in brackets: paired ratio to the whole image in one call)")
print("| tile | share of computed pixels kept | " + " | ".join(paths) + " |")
print("|---" * (len(paths) + 2) + "|")
for tile in dict.fromkeys(r["tile"] for r in tiles["rows"]):
    same = {r["path"]: r for r in tiles["rows"] if r["tile"] == tile}
    useful = next(iter(same.values()))["useful"]
    cells = [f"{same[p]['mp_per_s']:.3f} ({same[p]['vs_tile_0']:.2f}x)" for p in paths]
    print(f"| {tile or 'whole'} | {useful:.2f} | " + " | ".join(cells) + " |")
print("best tile:", tiles["best_tile"])
EOF
