#!/usr/bin/env bash
# Every CPU figure in README.md and weights/lir-lite-gauss.md, in one go (about 20 minutes on
# 2 cores; run it on an otherwise idle machine). Outputs land in runs/measure/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
M=runs/measure
D=../shared/data
mkdir -p "$M"
# hardware ceiling
$BIN/python benchmarks/matmul_rate.py > "$M/matmul.json"
# restore throughput, torch vs ONNX Runtime, both presets (random weights: speed does not depend on training)
$BIN/python benchmarks/onnx_vs_torch.py --threads 2 --size 512 --runs 3 > "$M/onnx_vs_torch.txt"
# training speed, batch 16, 64x64 crops, semantic term off (no VGG weights here)
for cfg in lir-lite lir; do
  rm -rf "/tmp/invrep-speed-$cfg"
  $BIN/invrep train --clean "$D/CBSD432" --synthetic gaussian:25 --config "$cfg" --out "/tmp/invrep-speed-$cfg" \
    --steps 4 --batch-size 16 --crop-size 64 --w-semantic 0 --workers 1 --json > "$M/train-speed-$cfg.json"
done
# peak memory of a 6000x4000 photo on CPU (tile chosen by restore)
$BIN/python benchmarks/peak_memory.py > "$M/peak_memory.txt"
# quality and speed of the bundled weights on the standard test sets, same noisy files for every method
$BIN/invrep bench "$D/CBSD68" --sigma 15,25,50 --baselines noisy,nlm --json > "$M/bench-cbsd68.json"
$BIN/invrep bench "$D/Set12" --gray --sigma 15,25,50 --baselines noisy,nlm --json > "$M/bench-set12.json"
# BM3D is slow (~0.008 MP/s colour on this CPU): all 12 Set12 images, and the first 5 CBSD68 images
# (the noise is seeded per image index and sigma, so these are the same noisy files as above)
$BIN/invrep bench "$D/Set12" --sigma 15,25,50 --baselines noisy,nlm,bm3d --backends '' --threads 1 --json \
  > "$M/bench-set12-bm3d.json"
$BIN/invrep bench "$D/CBSD68" --sigma 15,25,50 --baselines noisy,nlm,bm3d --backends torch --limit 5 --json \
  > "$M/bench-cbsd68-first5-bm3d.json"
