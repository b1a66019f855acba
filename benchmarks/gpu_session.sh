#!/usr/bin/env bash
# One GPU session of invrep (issue 5), in phases that each fit the device tool's 10-minute command limit.
# Nothing here runs on CI. Preparation on the CPU machine, once per session, in the repo root:
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu/data
#   cp -r ../shared/data/CBSD432 ../shared/data/CBSD68 .gpu/data/      # ../shared does not travel
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .gpu/whl typer rich shellingham click safetensors platformdirs opencv-python-headless scikit-image \
#     imageio tifffile lazy-loader networkx                                # what the GPU image lacks
# Then, with carry [".gpu"], call in turn (the machine stays warm only 30 s between calls):
#   bash benchmarks/gpu_session.sh test            # GPU tests + training/restore speed figures
#   bash benchmarks/gpu_session.sh train 540       # default recipe on the GPU for 540 s, checkpoint on exit
#   bash benchmarks/gpu_session.sh train 540       # resumes the same run
#   bash benchmarks/gpu_session.sh finish          # restorer (fp16 safetensors) + bench on CBSD68 sigma 25 -> $OUT
set -euo pipefail
phase=${1:?phase: test | train SECONDS | finish}
export PYTHONUNBUFFERED=1
if [ -d .gpu/whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
OUT=${OUT:-/tmp/out}
RUN=/tmp/invrep-gpu-run
DATA=.gpu/data
invrep() { python3 -m invrep_cli "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUT/gpu.txt"

case "$phase" in
  test)
    python3 -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/gpu-tests.txt"
    # training speed of the authors' shape, batch 16, 64x64, bf16 + channels-last; GPU utilisation sampled alongside
    nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader -lms 500 > "$OUT/util.txt" &
    smi=$!
    invrep train --clean "$DATA/CBSD432" --synthetic gaussian:5-50 --config lir --out /tmp/speed --steps 300 \
      --batch-size 16 --crop-size 64 --amp auto --channels-last --w-semantic 0 --workers 8 --log-every 50 \
      --checkpoint-every 100000 --sample-every 100000 --json > "$OUT/train-speed.json"
    kill $smi
    invrep bench "$DATA/CBSD68" --sigma 25 --limit 20 --weights /tmp/speed/restorer.safetensors \
      --device cuda --baselines noisy --json > "$OUT/bench-speed.json"
    ;;
  train)
    seconds=${2:?train SECONDS}
    resume=(); [ -f "$RUN/last.pt" ] && resume=(--resume)
    # SIGINT makes invrep train write a checkpoint and exit cleanly
    timeout -s INT "$seconds" python3 -m invrep_cli train --clean "$DATA/CBSD432" --synthetic gaussian:5-50 \
      --config lir --out "$RUN" --steps 300000 --batch-size 16 --crop-size 64 --amp auto --channels-last \
      --w-semantic 0 --workers 8 --checkpoint-every 2000 --sample-every 5000 --quiet "${resume[@]}" || true
    tail -n 3 "$RUN/log.jsonl" | tee "$OUT/train-tail.jsonl"
    ;;
  finish)
    python3 - "$RUN/last.pt" "$OUT/lir-gauss-gpu.safetensors" <<'PY'
import sys
from invrep_cli.checkpoint import load_restorer, save_restorer
restorer, meta = load_restorer(sys.argv[1])
save_restorer(restorer, sys.argv[2], {"trained_steps": meta.get("step"), "hardware": "GPU session"}, half=True)
PY
    cp "$RUN/log.jsonl" "$OUT/train-log.jsonl"
    invrep bench "$DATA/CBSD68" --sigma 15,25,50 --weights "$OUT/lir-gauss-gpu.safetensors" --device cuda \
      --baselines noisy,nlm --json > "$OUT/bench-cbsd68.json"
    ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac
