#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with dpbench and its test extra.
# CPU machines get the CPU build of torch first (a bare `torch` requirement would
# pull a multi-GB CUDA build); on a GPU machine set DPBENCH_TORCH to the torch
# you want (e.g. DPBENCH_TORCH="torch" for the default CUDA wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "${DPBENCH_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[test]"
echo "dpbench installed in .venv: activate with 'source .venv/bin/activate'"
