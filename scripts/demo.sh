#!/usr/bin/env bash
# The main job: set everything up and run the `fast` Nb–O campaign on the embedded default
# (SQLite + ZeroMQ profile, localhost, CHGNet, CPU) through the AiiDA daemon.
# Each step prints the seconds since the start, so that the time of every stage can be read off the output.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stamp() { echo "[demo +$(( $(date +%s) - start )) s] $*"; }

if [ -x .venv/bin/aiida-crystalgan ] && [ .venv/bin/aiida-crystalgan -nt pyproject.toml ]; then
    stamp '.venv installed after the last change of pyproject.toml: set-up skipped'
else
    stamp 'set-up of .venv'
    bash scripts/setup-env.sh
fi
# shellcheck disable=SC1091
source .venv/bin/activate
export AIIDA_PATH="${AIIDA_PATH:-$PWD/.aiida}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # calculations run side by side: one thread each
OUTPUT="${CRYSTALGAN_DEMO_OUTPUT:-$PWD/demo-output}"
mkdir -p "$OUTPUT"

stamp "profile and codes (AIIDA_PATH=$AIIDA_PATH)"
aiida-crystalgan setup
verdi daemon start 1 || verdi daemon restart
trap 'verdi daemon stop >/dev/null 2>&1 || true' EXIT

stamp 'campaign'
aiida-crystalgan campaign submit --system Nb-O --protocol fast --references examples/references/nb-o --wait
stamp 'candidate table'
aiida-crystalgan candidates | tee "$OUTPUT/candidates.txt"
aiida-crystalgan report --output-dir "$OUTPUT/report"

first=$(aiida-crystalgan candidates --pks-only | head -n 1)
if [ -n "$first" ]; then
    aiida-crystalgan trace "$first" | tee "$OUTPUT/trace.txt"
fi
verdi process list -a -p 1 | tee "$OUTPUT/processes.txt"
stamp "demo finished; report: $OUTPUT/report/report.md"
