#!/usr/bin/env bash
# The main job: set everything up and run the `fast` Nb–O campaign on the embedded default
# (SQLite + ZeroMQ profile, localhost, CHGNet, CPU) through the AiiDA daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
# shellcheck disable=SC1091
source .venv/bin/activate
export AIIDA_PATH="${AIIDA_PATH:-$PWD/.aiida}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # calculations run side by side: one thread each
OUTPUT="${CRYSTALGAN_DEMO_OUTPUT:-$PWD/demo-output}"
mkdir -p "$OUTPUT"

start=$(date +%s)
aiida-crystalgan setup
verdi daemon start 1 || verdi daemon restart
trap 'verdi daemon stop >/dev/null 2>&1 || true' EXIT

aiida-crystalgan campaign submit --system Nb-O --protocol fast --references examples/references/nb-o --wait
aiida-crystalgan candidates | tee "$OUTPUT/candidates.txt"
aiida-crystalgan report --output-dir "$OUTPUT/report"

first=$(aiida-crystalgan candidates --pks-only | head -n 1)
if [ -n "$first" ]; then
    aiida-crystalgan trace "$first" | tee "$OUTPUT/trace.txt"
fi
verdi process list -a -p 1 | tee "$OUTPUT/processes.txt"
elapsed=$(( $(date +%s) - start ))
echo "demo finished in ${elapsed} s; report: $OUTPUT/report/report.md"
