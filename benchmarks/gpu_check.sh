#!/usr/bin/env bash
# The GPU check: one short run on one GPU (under 8 minutes on an H100-class GPU) that writes one JSON.
# Needs the project installed (pip install -e .) and full MNIST in ../shared/data (or --data-dir DIR,
# or $TUNER_DATA_DIR). $PYTHON picks the interpreter (default python3).
# `--dry-run` checks the script on the CPU with the shipped sample (CI runs it).
#   bash benchmarks/gpu_check.sh [--out FILE.json] [--data-dir DIR] [--dry-run]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
exec "${PYTHON:-python3}" -m benchmarks.gpu_check "$@"
