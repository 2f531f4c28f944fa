#!/usr/bin/env bash
# benchmarks/gpu.sh: the GPU suite for a short lent window (within 8 minutes on one GPU).
#
# 1. the GPU-only tests (tests/test_gpu.py, marked `gpu`; skipped on machines without CUDA),
# 2. the interleaved benchmark on cuda: every task and the backbone suite, fp32 (TF32 as torch's
#    default allows; the rows name the peak their MFU divides by) and bf16, quick shapes.
# Everything lands in OUT (default benchmarks/results): the runner's DATE-TIME-DEVICE.{json,md,png}
# and gpu-tests.txt. Each part has its own time limit, so a slow part cannot eat the next one's time;
# the exit status is that of the first part that failed.
#
#   bash benchmarks/gpu.sh                 # from the repository root or anywhere
#   OUT=/tmp/out PY=python3 bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUT=${OUT:-benchmarks/results}
TEST_SECONDS=${TEST_SECONDS:-90}
BENCH_SECONDS=${BENCH_SECONDS:-380}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0
timeout "$TEST_SECONDS" "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/gpu-tests.txt"
tests=$?
[ "$tests" -ne 0 ] && status=$tests
timeout "$BENCH_SECONDS" "$PY" -m benchmarks --device cuda --quick --out "$OUT" 2>&1 | tee "$OUT/gpu-bench.txt"
bench=$?
[ "$status" -eq 0 ] && [ "$bench" -ne 0 ] && status=$bench
exit "$status"
