#!/usr/bin/env bash
# Set up the environment, lint, and run the whole test suite (slow tests included, the documentation build too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Slurm, SSH, PostgreSQL, RabbitMQ for tests/infrastructure: as root, installed and required (fail, not skip).
if [[ $(id -u) -eq 0 ]]; then bash scripts/services.sh install; export CRYSTALGAN_REQUIRE_SERVICES=1; fi
# The daemon tests start `verdi` and the console scripts from PATH: put the environment's bin first.
export PATH="$PWD/.venv/bin:$PATH"
# Two xdist workers, one per core, each running its tests single-threaded; the slow tests start first.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest -ra --durations=20 -n "${PYTEST_WORKERS:-2}" --dist loadgroup "$@"
