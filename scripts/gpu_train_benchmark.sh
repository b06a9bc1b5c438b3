#!/usr/bin/env bash
# Issue 5's GPU check, sized for one device call (under 5 minutes on an H200): training images/s
# at batch 80 and 96 with AMP (bf16), end to end from 480x640 JPEGs, project vs naive pipeline.
#
#   scripts/gpu_train_benchmark.sh [OUT_DIR]          # default OUT_DIR: $OUT, else results
#
# Runs the package from src/ with the python3 found (it needs torch, torchvision and timm, which
# the device image has; nothing is installed). Writes OUT_DIR/train_benchmark_cuda.json and .log.
# DEVICE, GENERATE, BATCH_SIZES, IMAGE_SIZE, EPOCHS and WORKERS override the defaults; the test
# suite runs this script on the CPU with tiny values.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-results}}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
"$python" -c "import torch, torchvision, timm; print('torch', torch.__version__, '| cuda', torch.cuda.is_available())"
# shellcheck disable=SC2086  # BATCH_SIZES is a list
"$python" -m paddyclf benchmark train \
    --generate "${GENERATE:-1600}" \
    --device "$device" \
    --batch-size ${BATCH_SIZES:-80 96} \
    --image-size "${IMAGE_SIZE:-224}" \
    --epochs "${EPOCHS:-4}" \
    --num-workers "${WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))}" \
    --output "$out/train_benchmark_$device.json" 2>&1 | tee "$out/train_benchmark_$device.log"
