#!/usr/bin/env bash
# The main job on the embedded default: synthesize the clean test split (seed 1, the demo model's
# corpus seed), transcribe it with the committed demo model, print WER/CER and the per-utterance
# table. Results land in out/demo-eval/ (utterances.tsv, summary.json).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SPEECHMPQ_VENV:-.venv}"
if [ ! -x "$VENV/bin/speechmpq" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e '.[train]' torch==2.13.0
fi
"$VENV/bin/speechmpq" corpus --out out/demo-data --splits test-clean --seed 1 \
    --eval-utterances 300 --overwrite
"$VENV/bin/speechmpq" eval --model models/demo --data out/demo-data/test-clean \
    --out out/demo-eval --table
