#!/usr/bin/env bash
# Issue 20: `invrep train --noisy A --clean B --out R --time 20m`, nothing else, on a noise no bundled
# model was trained on (benchmarks/new_domain.py: gray, signal-dependent, spatially correlated, std 20
# at mid-gray), against the bundled default on BSD68 with the same noise (scoring only).
#   bash benchmarks/new_domain.sh data | train | score
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
R=runs/newdom
case "${1:-}" in
  data) $BIN/python benchmarks/new_domain.py $R ;;
  train) OMP_WAIT_POLICY=PASSIVE $BIN/invrep train --noisy $R/noisy --clean $R/clean --out $R/run --time "${T:-20m}" ;;
  score)
    mkdir -p runs/measure
    $BIN/invrep bench $R/test --pairs --weights weights/lir-unet-mix.safetensors,$R/run/restorer.safetensors \
      --backends torch --precisions fp32 --threads 2 --in-process --baselines noisy,nlm --json > runs/measure/newdom.json ;;
  *) echo "usage: $0 data|train|score" >&2; exit 2 ;;
esac
