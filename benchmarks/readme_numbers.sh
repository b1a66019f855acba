#!/usr/bin/env bash
# Every CPU figure in README.md, weights/lir-unet-gauss.md and weights/lir-unet-real.md, in one go
# (about 40 minutes on 2 cores; run it on an otherwise idle machine for the speed figures).
# Outputs land in runs/measure/; benchmarks/bench_md.py turns the bench JSON into the docs' tables.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
M=runs/measure
D=../shared/data
G=weights/lir-unet-gauss.safetensors
R=weights/lir-unet-real.safetensors
mkdir -p "$M"
# hardware ceiling and restore throughput, torch vs ONNX Runtime (random weights: speed does not depend on training)
$BIN/python benchmarks/matmul_rate.py > "$M/matmul.json"
$BIN/python benchmarks/onnx_vs_torch.py --models lir lir-lite lir-lite-unet --threads 2 --size 512 --runs 3 \
  > "$M/onnx_vs_torch.txt"
# peak memory of a 6000x4000 photo on CPU (tile chosen by restore)
$BIN/python benchmarks/peak_memory.py > "$M/peak_memory.txt"
# the default model on the standard test sets, same noisy files for every method
$BIN/invrep bench "$D/CBSD68" --sigma 15,25,50 --weights $G --backends torch --precisions fp32 \
  --baselines noisy,nlm --threads 1 --json > "$M/bench-cbsd68.json"
$BIN/invrep bench "$D/Set12" --gray --sigma 15,25,50 --weights $G --backends torch --precisions fp32 \
  --baselines noisy,nlm --threads 1 --json > "$M/bench-set12.json"
# BM3D is slow (about 0.015 MP/s colour): the first 12 CBSD68 images at sigma 25 (noise is seeded per
# image index and sigma, so these are the same noisy files as above)
$BIN/invrep bench "$D/CBSD68" --sigma 25 --limit 12 --weights $G --backends torch --precisions fp32 \
  --baselines noisy,nlm,bm3d --threads 1 --json > "$M/bench-cbsd68-first12-bm3d.json"
# real noise: CC15 pairs; classical methods at the estimated and at the oracle level; both models
$BIN/invrep bench "$D/CC15" --pairs --weights $R,$G --backends torch --precisions fp32 \
  --baselines noisy,nlm,bm3d --threads 2 --json > "$M/bench-cc15.json"
# the restorer shapes under stage 1, same seed and steps, scored on the run's own noisy half
$BIN/python benchmarks/ablation.py --study restorer --steps 200 --batch-size 16 > "$M/ablation-restorer.json"
