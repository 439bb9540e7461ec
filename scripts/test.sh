#!/usr/bin/env bash
# The test command: a fresh virtual environment with the training and dev extras (torch pinned to
# the CPU build), then the default test suite (slow tests excluded; run them with -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SPEECHMPQ_TEST_VENV:-.venv-test}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[train,serve,dev]' torch==2.13.0
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest "$@"
