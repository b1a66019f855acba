#!/usr/bin/env bash
# Issue 20: `invrep train --noisy A --clean B --out R --time 20m`, nothing else, on a noise no bundled
# model was trained on (benchmarks/new_domain.py: gray, signal-dependent, spatially correlated, std 20
# at mid-gray), against the bundled default on BSD68 with the same noise (scoring only).
#   bash benchmarks/new_domain.sh data | train | score | recipe | held | stage2
# NOISE=banding R=runs/band: the same with a noise the fitted model cannot draw (column banding), to
# see whether LIR's stage 2 learns what the fit gets wrong:
#   OUT=runs/band/NAME HIGH_PASS=G CLEAN_HIGH_PASS=G bash benchmarks/new_domain.sh stage2
# runs stage2_real.sh's fixed recipe (721 stage-1 steps from the auto-chosen bundled model, 200 LIR
# steps, freeze 50, G_X begun as the noise model, anchor 1) on 1 thread, so two run side by side;
# then MODELS=RUN/restorer-stage1.safetensors,RUN/restorer-stage2.safetensors ... `held` scores them.
# NOISE=fluorescence R=runs/fluo: dark fields with few-photon noise (README, Round FLUO); its oracle run
# is benchmarks/oracle_noise.py.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
R=${R:-runs/newdom}
case "${1:-}" in
  data) $BIN/python benchmarks/new_domain.py $R --noise "${NOISE:-correlated}" ;;
  train) OMP_WAIT_POLICY=PASSIVE $BIN/invrep train --noisy $R/noisy --clean $R/clean --out $R/run --time "${T:-20m}" ;;
  recipe)
    # the default recipe at its default length, one thread (README, "The moving average of a short
    # fine-tune"): OUT=runs/newdom/NAME, then `held` scores it on the run's own held-out pairs
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $BIN/invrep train --noisy $R/noisy --clean $R/clean --out "$OUT" \
      --steps 1200 --checkpoint-every 300 --keep 10 --workers 1 --json > "$OUT.json"
    $BIN/python benchmarks/raw_restorer.py "$OUT/last.pt" "$OUT/raw.safetensors" ;;
  stage2)
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $BIN/invrep train --noisy $R/noisy --clean $R/clean --out "$OUT" \
      --warmup-steps 721 --lir-steps 200 --lir-freeze 50 --gx-noise-model --w-anchor 1 \
      --disc-high-pass "${HIGH_PASS:-0}" ${CLEAN_HIGH_PASS:+--clean-disc-high-pass "$CLEAN_HIGH_PASS"} \
      --seed "${SEED:-3}" --checkpoint-every 100 --keep 30 --workers 1 --w-semantic 0 --json > "$OUT.json" ;;
  held)
    # MODELS (comma list) on the held-out pairs (CBSD432 photos no Train400 crop came from): what a
    # choice of training settings may look at
    $BIN/invrep bench $R/held --pairs --weights "$MODELS" --backends torch --precisions fp32 --threads 1 \
      --in-process --baselines noisy --json ;;
  score)
    mkdir -p runs/measure
    $BIN/invrep bench $R/test --pairs --weights weights/lir-unet-mix.safetensors,$R/run/restorer.safetensors \
      --backends torch --precisions fp32 --threads 2 --in-process --baselines noisy,nlm --json > runs/measure/newdom.json ;;
  *) echo "usage: $0 data|train|score|recipe|held|stage2" >&2; exit 2 ;;
esac
