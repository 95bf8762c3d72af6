#!/usr/bin/env bash
# Run every README command on a fresh clone (or --here) and record durations in results/readme/check.md.
# See scripts/check_readme.py for what is run how.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
exec "$PY" scripts/check_readme.py "$@"
