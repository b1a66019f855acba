#!/usr/bin/env bash
# Issue 17's targets for the bundled models, side by side, on the CPU (fp32, torch; the same noisy
# files for every model). Test sets are read for scoring only: nothing here trains or chooses.
#   bash benchmarks/default_numbers.sh [MODELS]   (comma list; default: the three models in weights/)
#   the card's earlier-model rows: TAG=base-t17 THREADS=1 bash benchmarks/default_numbers.sh \
#     weights/lir-unet-gauss.safetensors,weights/lir-unet-real.safetensors
#   a candidate alone, without the (slow, unchanged) NLM rows: TAG=t17e BASELINES=noisy bash ... runs/x.safetensors
# JSON lands in runs/measure/; benchmarks/bench_md.py turns it into the tables of the model cards.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
M=runs/measure
D=../shared/data
W=${1:-weights/lir-unet-mix.safetensors,weights/lir-unet-gauss.safetensors,weights/lir-unet-real.safetensors}
T=${THREADS:-2}
# TAG names the output files, so scoring other models does not overwrite the default's JSON
TAG=${TAG:-t17}
B=${BASELINES:-noisy,nlm}
mkdir -p "$M"
COMMON=(--weights "$W" --backends torch --precisions fp32 --threads "$T" --in-process --json)
# sigma 0: the clean photos as they are (how much each model changes them)
$BIN/invrep bench "$D/CBSD68" --sigma 0,15,25,50 --baselines "$B" "${COMMON[@]}" > "$M/$TAG-cbsd68.json"
$BIN/invrep bench "$D/Set12" --gray --sigma 15,25,50 --baselines "$B" "${COMMON[@]}" > "$M/$TAG-set12.json"
$BIN/invrep bench "$D/CC15" --pairs --baselines "$B" "${COMMON[@]}" > "$M/$TAG-cc15.json"
$BIN/invrep bench "$D/PolyU100" --pairs --noisy-pattern '*_real.JPG' --ref-pattern '*_mean.JPG' \
  --baselines noisy "${COMMON[@]}" > "$M/$TAG-polyu100.json"
