#!/usr/bin/env bash
# The fuzz run: every property in tests/fuzz with N examples each (default 2000: 6 properties ->
# 12,000 cases), hypothesis statistics printed (cases run per property, outcomes).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
SPEECHMPQ_FUZZ_EXAMPLES=${1:-2000} "$PYTHON" -m pytest tests/fuzz -q -p no:cacheprovider \
    --hypothesis-show-statistics --hypothesis-seed="${SEED:-0}"
