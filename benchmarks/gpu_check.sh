#!/usr/bin/env bash
# The CUDA checks of issue #27 (benchmarks/gpu_check.py): about 5 minutes on one GPU, no download.
# Prints one PASS/FAIL/SKIP line per check and exits non-zero if any failed. On a machine without
# CUDA it prints one line saying so and exits 0 (skipped).
#
#   bash benchmarks/gpu_check.sh [--budget 300] [--jobs 4] [--keep DIR]
#   OFFICIAL_P2P=~/src/pytorch-CycleGAN-and-pix2pix OFFICIAL_BICYCLEGAN=~/src/BicycleGAN bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
python="${PYTHON:-python}"
if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check skipped: no CUDA device here (torch.cuda.is_available() is false)"
    exit 0
fi
exec "$python" benchmarks/gpu_check.py "$@"
