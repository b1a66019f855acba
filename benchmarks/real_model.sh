#!/usr/bin/env bash
# The real-noise model (weights/lir-unet-real.md) and issue 10's stage comparison, on the CPU.
#   A: stage 1 only, 5000 steps, fine-tuning the Gaussian default on noise fitted to PolyU's noisy photos
#   B: A's checkpoint at step K, then L LIR steps (stage 2) -- the same step budget as A at step K+L
#   C: the shipped file fine-tuned STEPS_C stage-1 steps with today's trainer (moving-average warm-up
#      for a trained start, learning-rate ramp); the CBSD432 training split as the clean folder
#      (`bash benchmarks/default_model.sh data` makes it). noref-c ranks its start and its checkpoints
#      on the noisy folder with no reference (the choice); score-c scores both on CC15 and PolyU pairs
#   base: REAL_A, the file A made and weights/ shipped until the soup below replaced it, from git
#      (C and stage2_real.sh's runs start from it, whatever weights/ holds now)
#   soup: R1, the mean of the weights of C and of stage2_real.sh's stage-1 run, both fine-tuned from
#      REAL_A (benchmarks/average_weights.py; shipped for under an hour on 2026-12-06)
#   blend: the shipped file since 2026-12-06: 0.85 x run G1 (the default's run) + 0.15 x R1, packaged
# Both run with one thread each, side by side on a 2-core machine (1 h 49 min for A, 70 min for B).
# Only the *_real files of PolyU100 are copied for training: their *_mean files are never read.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
D=../shared/data
REAL_A=${REAL_A:-runs/real-a.safetensors}
K=${K:-750}
L=${L:-250}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p runs/data/PolyU100-real
cp "$D"/PolyU100/*_real.JPG runs/data/PolyU100-real/
COMMON=(--noisy runs/data/PolyU100-real --clean "$D/CBSD432" --gray-fraction 0 --batch-size 16 --crop-size 64
        --workers 1 --w-semantic 0 --seed 0)
case "${1:-A}" in
  A)
    $BIN/invrep train "${COMMON[@]}" --init-weights weights/lir-unet-gauss.safetensors --out runs/real2 \
      --steps 5000 --warmup-steps 5000 --warmup-lr 2e-4 --checkpoint-every 250 --keep 30
    $BIN/python benchmarks/package_weights.py runs/real2/restorer.safetensors weights/lir-unet-real.safetensors \
      --min-margin 28 ;;
  B)
    # stage 2 starts from A's exponential moving average at step K; --ema 0.99: a 0.999 average of a
    # 250-step run would still be ~80 % its starting point
    $BIN/invrep train "${COMMON[@]}" --init-weights "runs/real2/checkpoints/step_$(printf %08d "$K").pt" \
      --out runs/real2-lir --steps "$L" --warmup-steps 0 --ema 0.99 --checkpoint-every 25 ;;
  C)
    # both cores (the A/B comparison above ran two runs side by side on one each)
    OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE \
      $BIN/invrep train --noisy runs/data/PolyU100-real --clean runs/data/CBSD432-train --gray-fraction 0 \
      --batch-size 16 --crop-size 64 --workers 1 --w-semantic 0 \
      --init-weights "$REAL_A" --out runs/real-c --steps "${STEPS_C:-3600}" \
      --warmup-steps "${STEPS_C:-3600}" --warmup-lr 1e-4 --seed 7 --checkpoint-every 600 --keep 10 ;;
  base)
    # the file as shipped from 2026-12-03 to 2026-12-06 (sha256 9955c736...), A's output
    git show d549dbc:weights/lir-unet-real.safetensors > "$REAL_A" ;;
  soup)
    $BIN/python benchmarks/average_weights.py runs/soup/R1.safetensors runs/real-c/restorer.safetensors \
      runs/s2/stage1/restorer.safetensors ;;
  blend)
    # the no-reference score on the noisy folder peaked near here on the line from G1 to R1
    # (runs/decision-real-j.txt); G1 is run mix-g1's output, the default's weights on 2026-12-06
    $BIN/python benchmarks/average_weights.py runs/soup/J15.safetensors runs/mix-g1/restorer.safetensors \
      runs/soup/R1.safetensors --weights 0.85,0.15
    $BIN/python benchmarks/package_weights.py runs/soup/J15.safetensors weights/lir-unet-real.safetensors \
      --min-margin 28 --note "lir-lite-unet: 0.85 x lir-unet-mix run G1 + 0.15 x the mean of two camera-noise fine-tunes, CPU" ;;
  noref-c)
    $BIN/python benchmarks/noref_choice.py runs/data/PolyU100-real "$REAL_A" \
      runs/real-c/checkpoints/step_*.pt runs/real-c/restorer.safetensors ;;
  score-c)
    # scoring only, after the choice: the references are never read by a choice
    C=(--weights "$REAL_A",runs/real-c/restorer.safetensors --backends torch
       --precisions fp32 --threads "${THREADS:-1}" --in-process --json --baselines noisy)
    mkdir -p runs/measure
    $BIN/invrep bench "$D/CC15" --pairs "${C[@]}" > runs/measure/real-c-cc15.json
    $BIN/invrep bench "$D/PolyU100" --pairs --noisy-pattern '*_real.JPG' --ref-pattern '*_mean.JPG' \
      "${C[@]}" > runs/measure/real-c-polyu100.json ;;
  score)
    # A at step K+L against B (exponential moving averages, as shipped), on CC15: measured once, after
    # training; neither run chose anything on it
    $BIN/invrep bench "$D/CC15" --pairs --weights "runs/real2/checkpoints/step_$(printf %08d $((K + L))).pt,runs/real2-lir/last.pt" \
      --backends torch --precisions fp32 --baselines noisy --threads 2 --json > runs/measure/bench-cc15-stages.json ;;
esac
