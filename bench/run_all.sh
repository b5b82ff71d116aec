#!/usr/bin/env bash
# Every benchmark of docs/PERFORMANCE.md, one after another (never in parallel: they
# share the cores they measure). Output goes to stdout and out/bench/<name>.txt (ignored by git).
#
#     bench/run_all.sh            # ~20 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p out/bench
run() {
    local name=$1; shift
    echo "### $name: $PY bench/$name.py $*"
    "$PY" "bench/$name.py" "$@" 2>&1 | grep -v "Loading weights" | tee "out/bench/$name.txt"
}
run throughput --texts 1000 --rounds 3
run latency --jobs 100
run wire --texts 1000
run scale --texts 1000
run breakdown --texts 1000
run optimize --texts 1000 --rounds 3
run quant_variants --texts 512
run fleet_cost --texts 200000 --rounds 2 --dataset-rows 500000
run precision --texts 256 --rounds 3
run gateway --blocks 3 --busy-requests 10
run scan_pinning --rows 2000000 --rounds 15
run take --messages 5000 --rounds 3
run fleet_answers --rounds 5
