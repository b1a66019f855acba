#!/usr/bin/env bash
# The bundled default `lir-unet-mix` (weights/lir-unet-mix.md): one model for clean photos, camera
# noise, Gaussian and Poisson-Gaussian noise, trained without pairs on the CPU.
#   data:  copies PolyU100's *_real.JPG (never the *_mean files) as the noisy folder; splits CBSD432
#          with a fixed seed into 400 training images and 32 held-out ones (the run's own held-out
#          half, the only images a choice may look at)
#   train: run A, stage 1 fine-tunes lir-unet-gauss with a noise mix drawn per crop (6000 steps)
#   train-b: run B, run A fine-tuned 1800 steps with more camera noise (the default until run E)
#   train-e: run E, run B fine-tuned 9000 steps with a correlated-noise share: the shipped file
#   train-f: candidates F1 and F2, run E fine-tuned 4200 steps with a larger camera-noise share (two
#          doses), side by side on one thread each
#   train-g: candidates G1 and G2 (G1 shipped), run F1 fine-tuned further with F1's mix, on
#          64-px crops (batch 16) and on 96-px crops (batch 8, about the same pixels per step), side
#          by side on one thread each
#   train-g3: G1's recipe again with another seed (9), on one thread, for a mean of G1's and G3's
#          weights (benchmarks/average_weights.py); G1 alone stays unless the mean wins (runs/decision-g3.txt)
#   train-t: candidates T25 and T38, G1 fine-tuned 3000 steps with lir-unet-real as --teacher on the
#          noisy folder's own crops (a quarter and 3/8 of each batch), side by side on one thread each
#   train-u: candidate U, run T25 fine-tuned 1500 steps with the teacher's 8-orientation mean as targets
#   train-v: round V, T25 fine-tuned 3000 steps blind (VB) and conditioned on the noise level (VL)
#   held:  scores checkpoints on 8 of the held-out images under every kind of noise (held_out.py)
#   noref: ranks checkpoints on the noisy folder with no reference (noref_choice.py)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
D=../shared/data
STEPS=${STEPS:-6000}
# run F1's shares: train-f's F1 and both train-g runs
F1_MIX="clean=0.05,gaussian:0-50=0.17,poisson-gaussian:1-50=0.08,correlated:1-50=0.08,own=0.62"
MIX=${MIX:-clean=0.15,gaussian:0-50=0.35,poisson-gaussian:1-50=0.2,own=0.3}
# run T25's shares (F1's, rescaled over the synthetic crops of a batch whose quarter is taught)
T25_MIX="clean=0.067,gaussian:0-50=0.227,poisson-gaussian:1-50=0.107,correlated:1-50=0.107,own=0.492"

# the taught recipe of rounds T, U and V: stage 1 only, lir-unet-real (runs/j15.safetensors) as
# --teacher on the noisy folder less the 12 photos the no-reference choice reads, THREADS threads
# (default 1). Arguments: OUT INIT MIX TEACHER_SHARE STEPS SEED [more train flags; a repeated
# flag's last value wins]
taught_run() {
  OMP_NUM_THREADS=${THREADS:-1} MKL_NUM_THREADS=${THREADS:-1} OMP_WAIT_POLICY=PASSIVE $BIN/invrep train \
    --noisy runs/data/PolyU100-taught --clean runs/data/CBSD432-train \
    --init-weights "$2" --out "runs/$1" --noise-mix "$3" \
    --teacher runs/j15.safetensors --teacher-share "$4" \
    --steps "$5" --warmup-steps "$5" --warmup-lr 1e-4 --batch-size 16 --crop-size 64 \
    --workers 1 --w-semantic 0 --seed "$6" --checkpoint-every 300 --keep 20 "${@:7}"
}
case "${1:-train}" in
  data)
    mkdir -p runs/data/PolyU100-real runs/data/CBSD432-train runs/data/CBSD432-held
    cp "$D"/PolyU100/*_real.JPG runs/data/PolyU100-real/
    $BIN/python - <<'PY'
import glob, os
import numpy as np
files = sorted(glob.glob("../shared/data/CBSD432/*.jpg"))
held = set(np.random.default_rng(2026).choice(len(files), 32, replace=False).tolist())
for i, f in enumerate(files):
    d = "runs/data/CBSD432-held" if i in held else "runs/data/CBSD432-train"
    dst = os.path.join(d, os.path.basename(f))
    if not os.path.exists(dst):
        os.symlink(os.path.abspath(f), dst)
# held8: the first 8 held-out images by name, what the model card's held-out table scores
os.makedirs("runs/data/held8", exist_ok=True)
for name in sorted(os.listdir("runs/data/CBSD432-held"))[:8]:
    dst = os.path.join("runs/data/held8", name)
    if not os.path.exists(dst):
        os.symlink(os.path.realpath(os.path.join("runs/data/CBSD432-held", name)), dst)
PY
    ;;
  train)
    # RESUME=--resume continues runs/mix where it stopped (instead of starting from the Gaussian model)
    # passive OpenMP waits: on 2 cores shared with other work, spinning threads slowed steps 10x
    OMP_WAIT_POLICY=PASSIVE $BIN/invrep train --noisy runs/data/PolyU100-real --clean runs/data/CBSD432-train \
      ${RESUME:---init-weights weights/lir-unet-gauss.safetensors} --out runs/mix --noise-mix "$MIX" \
      --steps "$STEPS" --warmup-steps "$STEPS" --warmup-lr 2e-4 --batch-size 16 --crop-size 64 \
      --workers 1 --w-semantic 0 --seed 0 --checkpoint-every 250 --keep 40 ;;
  train-b)
    # run B: run A's file fine-tuned with a larger camera-noise share and a smaller clean share (run A
    # left faint camera noise in: the no-reference score on the noisy folder said so, 40.14 vs
    # lir-unet-real's 41.06 dB); shipped as lir-unet-mix
    OMP_WAIT_POLICY=PASSIVE $BIN/invrep train --noisy runs/data/PolyU100-real --clean runs/data/CBSD432-train \
      ${RESUME:---init-weights runs/mix/restorer.safetensors} --out runs/mix-b \
      --noise-mix "${MIX_B:-clean=0.08,gaussian:0-50=0.2,poisson-gaussian:1-50=0.12,own=0.6}" \
      --steps 1800 --warmup-steps 1800 --warmup-lr 1e-4 --batch-size 16 --crop-size 64 \
      --workers 1 --w-semantic 0 --seed 1 --checkpoint-every 300 --keep 10 ;;
  train-e)
    # run E, the shipped file: run B's file (the previous default) fine-tuned 9000 steps with a share
    # of spatially correlated Poisson-Gaussian noise (the default took strong grain for texture)
    OMP_WAIT_POLICY=PASSIVE $BIN/invrep train --noisy runs/data/PolyU100-real --clean runs/data/CBSD432-train \
      ${RESUME:---init-weights runs/mix-b/restorer.safetensors} --out runs/mix-e \
      --noise-mix "clean=0.08,gaussian:0-50=0.17,poisson-gaussian:1-50=0.1,correlated:1-50=0.1,own=0.55" \
      --steps 9000 --warmup-steps 9000 --warmup-lr 1e-4 --batch-size 16 --crop-size 64 \
      --workers 1 --w-semantic 0 --seed 5 --checkpoint-every 500 --keep 20 ;;
  train-f)
    # run E left the noisy folder's camera noise partly in (its no-reference score peaks at --strength
    # 1.2), so these move crops from the other components to `own`, at two doses
    f_run() {
      OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $BIN/invrep train \
        --noisy runs/data/PolyU100-real --clean runs/data/CBSD432-train \
        --init-weights runs/mix-e/restorer.safetensors --out "runs/$1" --noise-mix "$2" \
        --steps 4200 --warmup-steps 4200 --warmup-lr 1e-4 --batch-size 16 --crop-size 64 \
        --workers 1 --w-semantic 0 --seed 6 --checkpoint-every 350 --keep 20
    }
    f_run mix-f1 "$F1_MIX" &
    f_run mix-f2 "clean=0.04,gaussian:0-50=0.15,poisson-gaussian:1-50=0.06,correlated:1-50=0.07,own=0.68" &
    wait ;;
  train-g|train-g3)
    # run F1 still leaves some camera noise in (its no-reference score rises at --strength 1.2) and
    # trails lir-unet-real on the noisy folder's kind of noise: G1 is more of the same recipe, G2 asks
    # whether larger crops (more context for the UNet's coarse levels, where correlated noise lives) help
    g_run() {
      OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $BIN/invrep train \
        --noisy runs/data/PolyU100-real --clean runs/data/CBSD432-train \
        --init-weights runs/mix-f1/restorer.safetensors --out "runs/$1" \
        --noise-mix "$F1_MIX" \
        --steps "$2" --warmup-steps "$2" --warmup-lr 1e-4 --batch-size "$3" --crop-size "$4" \
        --workers 1 --w-semantic 0 --seed "${SEED:-8}" --checkpoint-every 300 --keep 20
    }
    if [ "${1}" = train-g3 ]; then
      SEED=9 g_run mix-g3 4200 16 64
    else
      g_run mix-g1 4200 16 64 &
      g_run mix-g2 3800 8 96 &
      wait
    fi ;;
  train-t)
    # candidates T25 and T38: G1 (the default) taught by lir-unet-real on the real camera noise. The
    # no-reference score said G1 leaves camera noise in that the fitted model does not teach
    # (runs/decision-g3.txt, README "criterion"); `--teacher` shows stage 1 the noisy folder's own
    # crops with J15's outputs as targets, on 4 or 6 of each batch of 16. The other components keep
    # G1's crops per batch (T25_MIX, T38's below: F1's shares rescaled over the synthetic crops), so only
    # `own` crops give way. The 12 photos the no-reference choice reads are left out of the folder.
    git show 4341f66:weights/lir-unet-mix.safetensors > runs/g1.safetensors
    git show 4341f66:weights/lir-unet-real.safetensors > runs/j15.safetensors
    $BIN/python - <<'PY'
import os
import numpy as np
from invrep_cli.data import list_images
files = list_images("runs/data/PolyU100-real")
scored = {int(i) for i in np.unique(np.linspace(0, len(files) - 1, 12).astype(int))}  # noref_choice.py's picks
os.makedirs("runs/data/PolyU100-taught", exist_ok=True)
for i, f in enumerate(files):
    dst = os.path.join("runs/data/PolyU100-taught", f.name)
    if i not in scored and not os.path.exists(dst):
        os.symlink(os.path.realpath(f), dst)
PY
    taught_run mix-t25 runs/g1.safetensors "$T25_MIX" 0.25 3000 10 &
    taught_run mix-t38 runs/g1.safetensors \
      "clean=0.08,gaussian:0-50=0.272,poisson-gaussian:1-50=0.128,correlated:1-50=0.128,own=0.392" 0.375 3000 10 &
    wait ;;
  train-u)
    # candidate U: run T25 (the default since 2026-12-06's fifth session) taught again by
    # lir-unet-real, now with its mean over the 8 orientations as targets (restore's
    # --self-ensemble 8 gave the default +0.10 dB on CC15), T25's mix and share, on both threads
    THREADS=2 taught_run mix-u runs/mix-t25/restorer-stage1.safetensors "$T25_MIX" 0.25 1500 11 \
      --teacher-ensemble 8 --checkpoint-every 250 --keep 10 ;;
  train-v)
    # round V, issue 17 item 2 at equal cost: T25 (the default) fine-tuned 3000 more stage-1 steps
    # with T25's own recipe, once blind (VB, the control) and once conditioned on each image's
    # estimated noise level (VL, --level-input; its level weights start at zero, so it starts as
    # T25). Same seed, so both draw the same crops and noise; one thread each, side by side.
    taught_run mix-vb runs/mix-t25/restorer-stage1.safetensors "$T25_MIX" 0.25 3000 12 &
    taught_run mix-vl runs/mix-t25/restorer-stage1.safetensors "$T25_MIX" 0.25 3000 12 --level-input &
    wait ;;
  noref)
    # checkpoints as CKPTS (space list), ranked on the noisy folder with no reference
    $BIN/python benchmarks/noref_choice.py runs/data/PolyU100-real $CKPTS ;;
  held)
    # checkpoints as CKPTS (space list); the camera cases use run A's fitted noise
    $BIN/python benchmarks/held_out.py runs/data/held8 $CKPTS --noise-log runs/mix/log.jsonl ;;
esac
