#!/usr/bin/env bash
# Issue 20's stage-2 target on real camera noise: stage 1 alone vs stage 1 + LIR stage 2 at the same
# wall-clock budget, both fine-tuning lir-unet-real on PolyU100's *_real files (noisy) and the
# CBSD432 training split (clean; `bash benchmarks/default_model.sh data` makes both folders).
# They start from REAL_A, the lir-unet-real file of 2026-12-03 (`bash benchmarks/real_model.sh base`).
#   bash benchmarks/stage2_real.sh stage1   # --time T of stage 1 alone (SEED, OUT: another run of it;
#                                           # R3's third ingredient: OMP_NUM_THREADS=1 SEED=5 T=50m
#                                           # OUT=runs/s2/stage1-b, on one thread beside another run)
#   bash benchmarks/stage2_real.sh lir      # --time T: LIR_STEPS of stage 2 (frozen restorer for the
#                                           # first FREEZE, G_X begun as the noise model, anchor on),
#                                           # stage 1 gets what is left
#   bash benchmarks/stage2_real.sh fixed    # the lir run's recipe at its planned steps (721 stage-1, 200
#                                           # LIR), not a budget, so that runs side by side compare:
#                                           # HIGH_PASS=20 OUT=runs/s2/lir-hp (D_X, D_Y read the high-pass)
#                                           # against HIGH_PASS=0 OUT=runs/s2/lir-fixed; CLEAN_HIGH_PASS=0
#                                           # with HIGH_PASS=20: D_X alone on the high-pass
#   bash benchmarks/stage2_real.sh score    # both runs' restorers on CC15 and PolyU100 pairs (scoring
#                                           # only) and on the noisy folder with no reference
# Each run's final report scores stage 1 and stage 2 on the noisy folder and ships the better.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
D=../shared/data
T=${T:-25m}
REAL_A=${REAL_A:-runs/real-a.safetensors}
COMMON=(--noisy runs/data/PolyU100-real --clean runs/data/CBSD432-train
        --init-weights "$REAL_A" --warmup-lr 1e-4
        --batch-size 16 --crop-size 64 --workers 1 --w-semantic 0 --seed "${SEED:-3}" --checkpoint-every 100 --keep 30)
STAGE2=(--lir-steps "${LIR_STEPS:-200}" --lir-freeze "${FREEZE:-50}" --gx-noise-model --w-anchor "${ANCHOR:-1}")
# more stage-2 options, e.g. Round GXLR's best arm: FREEZE=400 STAGE2_OPTS="--gx-residual noise-code
# --gx-gate-ramp 200 --lir-restorer-lr 1e-5 --lir-gx-lr 1e-3"
read -ra EXTRA <<< "${STAGE2_OPTS:-}"
STAGE2+=("${EXTRA[@]}")
export OMP_WAIT_POLICY=PASSIVE  # on 2 shared cores, spinning OpenMP threads slowed steps 10x
case "${1:-}" in
  stage1) $BIN/invrep train "${COMMON[@]}" --time "$T" --out "${OUT:-runs/s2/stage1}" ;;
  lir) $BIN/invrep train "${COMMON[@]}" "${STAGE2[@]}" --time "$T" --out runs/s2/lir ;;
  fixed) $BIN/invrep train "${COMMON[@]}" "${STAGE2[@]}" --warmup-steps "${WARMUP:-721}" \
           --disc-high-pass "${HIGH_PASS:-0}" ${CLEAN_HIGH_PASS:+--clean-disc-high-pass "$CLEAN_HIGH_PASS"} \
           --out "${OUT:-runs/s2/lir-fixed}" ;;
  score)
    mkdir -p runs/measure
    W=$REAL_A,runs/s2/stage1/restorer.safetensors
    for run in ${RUNS:-runs/s2/lir}; do  # RUNS="runs/s2/lir-fixed runs/s2/lir-hp" TAG=hp: the fixed runs
      # restorer-stage2 exists only when the run shipped stage 1 in restorer.safetensors (a copy)
      stage2=$run/restorer.safetensors
      [ -f $run/restorer-stage2.safetensors ] && stage2=$run/restorer-stage2.safetensors
      W=$W,$run/restorer-stage1.safetensors,$stage2
    done
    C=(--weights "$W" --backends torch --precisions fp32 --threads 2 --in-process --json --baselines noisy)
    $BIN/invrep bench "$D/CC15" --pairs "${C[@]}" > runs/measure/s2${TAG:+-$TAG}-cc15.json
    $BIN/invrep bench "$D/PolyU100" --pairs --noisy-pattern '*_real.JPG' --ref-pattern '*_mean.JPG' \
      "${C[@]}" > runs/measure/s2${TAG:+-$TAG}-polyu100.json
    $BIN/python benchmarks/noref_choice.py runs/data/PolyU100-real ${W//,/ } --threads 2 ;;
  *) echo "usage: $0 stage1|lir|fixed|score" >&2; exit 2 ;;
esac
