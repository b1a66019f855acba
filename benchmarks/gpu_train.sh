#!/usr/bin/env bash
# Train both shipped models (issues 9 and 10) in ONE device call on a lent GPU: the Gaussian default
# (--synthetic gaussian:5-50 on CBSD432) and the real-camera-noise model (PolyU100 noisy photos,
# unpaired with CBSD432), each with the two stages of `invrep train` (noise-model warm start, then
# LIR). Nothing here runs on CI. The step counts come from the speed measured at the start of the
# call, so each stage fits its time budget and the stage boundary is a fixed step (exact resume).
#
# Preparation on the CPU machine, in the repo root (../shared does not travel; PolyU's *_mean
# files are never copied):
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu/data/PolyU100-real .gpu/whl
#   cp -r ../shared/data/CBSD432 .gpu/data/ && cp ../shared/data/PolyU100/*_real.JPG .gpu/data/PolyU100-real/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .gpu/whl platformdirs        # the one package the GPU image lacks
# Optionally freeze the code that trains (the working tree may be mid-edit): cp -r invrep_cli .gpu/src/
# Then: device run with carry [".gpu"]: bash benchmarks/gpu_train.sh
# Comes back under $OUT (8 files at most): rates.json, nvidia-smi.txt, and per model its stage-1
# and final restorers (fp32 safetensors, a few MB) and log.jsonl.
set -uo pipefail
export PYTHONUNBUFFERED=1
ROOT=$PWD
OUT=${OUT:-/tmp/invrep-gpu-out}
DATA=$(realpath "${GPU_DATA:-.gpu/data}")
WORK=${GPU_WORK:-/tmp/invrep-gpu}
CONFIG=${GPU_CONFIG:-lir-lite-unet}
BATCH=${GPU_BATCH:-32}
CROP=${GPU_CROP:-96}
WORKERS=${GPU_WORKERS:-6}
# seconds of training per stage: Gaussian stage 1 / 2, real-noise stage 1 / 2
read -r G1 G2 R1 R2 <<< "${GPU_BUDGET:-160 50 100 70}"
mkdir -p "$OUT" "$WORK"

SRC=$ROOT; [ -d .gpu/src/invrep_cli ] && SRC=$ROOT/.gpu/src
if [ -d .gpu/whl ] && ls .gpu/whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/site:$SRC
else
  export PYTHONPATH=$SRC
fi
cd "$SRC"  # python -m puts the current folder first on the path
echo "code from $SRC" >> "$OUT/nvidia-smi.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" >> "$OUT/nvidia-smi.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/nvidia-smi.txt"

common=(--config "$CONFIG" --batch-size "$BATCH" --crop-size "$CROP" --workers "$WORKERS" --w-semantic 0
        --channels-last --sample-every 1000000 --log-every 50 --keep 1)
gauss=(--clean "$DATA/CBSD432" --synthetic gaussian:5-50)
real=(--noisy "$DATA/PolyU100-real" --clean "$DATA/CBSD432")

# steps per second of the real loop (data loading included): median of the second half of a short run
rate() {  # rate NAME STEPS WARMUP
  python3 -m invrep_cli train "${gauss[@]}" "${common[@]}" --out "$WORK/probe-$1" --steps "$2" --warmup-steps "$3" \
    --checkpoint-every 1000000 --json > "$WORK/probe-$1.json" 2> "$WORK/probe-$1.err"
  python3 - "$WORK/probe-$1.json" <<'PY'
import json, statistics, sys
times = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["step_times"]
print(1.0 / statistics.median(times[len(times) // 2:]))
PY
}
r1=$(rate warm 100 100) || { cat "$WORK/probe-warm.err"; exit 1; }
if [ "$G2" = 0 ] && [ "$R2" = 0 ]; then r2=0; else r2=$(rate lir 16 0) || { cat "$WORK/probe-lir.err"; exit 1; }; fi
steps() { python3 -c "print(int(0.85 * $1 * $2))"; }
gs1=$(steps "$r1" "$G1"); gs2=$(steps "$r2" "$G2"); rs1=$(steps "$r1" "$R1"); rs2=$(steps "$r2" "$R2")
printf '{"stage1_steps_per_s": %s, "lir_steps_per_s": %s, "gauss": [%s, %s], "real": [%s, %s], "batch": %s, "crop": %s, "config": "%s"}\n' \
  "$r1" "$r2" "$gs1" "$gs2" "$rs1" "$rs2" "$BATCH" "$CROP" "$CONFIG" | tee "$OUT/rates.json"

# one model: stage 1 then LIR; SIGINT at the guard time writes a checkpoint and the restorer
train_model() {  # train_model NAME SECONDS STAGE1_STEPS STAGE2_STEPS DATA...
  local name=$1 seconds=$2 s1=$3 s2=$4; shift 4
  local every=$(( (s1 + s2) / 4 + 1 ))
  timeout -s INT "$seconds" python3 -m invrep_cli train "$@" "${common[@]}" --out "$WORK/$name" \
    --steps $((s1 + s2)) --warmup-steps "$s1" --checkpoint-every "$every" --json > "$WORK/$name.json" 2> "$WORK/$name.err"
  echo "$name: exit $?"; tail -n 3 "$WORK/$name.err"
  cp "$WORK/$name/log.jsonl" "$OUT/$name-log.jsonl"
  cp "$WORK/$name/restorer.safetensors" "$OUT/$name-final.safetensors"
  [ -f "$WORK/$name/restorer-stage1.safetensors" ] && cp "$WORK/$name/restorer-stage1.safetensors" "$OUT/$name-stage1.safetensors"
}
# GPU_MODELS picks which to train (a second call can spend what is left on one of them)
for model in ${GPU_MODELS:-gauss real}; do
  case $model in
    gauss) train_model gauss $((G1 + G2 + 45)) "$gs1" "$gs2" "${gauss[@]}" ;;
    real) train_model real $((R1 + R2 + 45)) "$rs1" "$rs2" "${real[@]}" ;;
  esac
done
ls -la "$OUT"
