#!/usr/bin/env bash
# Create the project's virtual environment (.venv) with Python 3.11 and install the package into it.
# PyTorch comes first, pinned to the CPU build (a bare `torch` requirement would pull a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
# `dev` = the test suite's needs (`tests`), the documentation build (`docs`) and ruff.
.venv/bin/python -m pip install --quiet -e ".[dev]"
