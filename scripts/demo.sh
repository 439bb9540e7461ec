#!/usr/bin/env bash
# The main job on the embedded default, start to finish: a small synthetic corpus, one-stage
# mixed-precision quantization of the committed demo model (short schedule), ONNX export of FP32, MPQ
# and onnxruntime's own int8-dynamic and int4-RTN, all streamed through the onnxruntime runtime (FP32,
# int8 and MPQ with and without the front-end cache), one table (WER with the lossless verdict,
# average bits, file size, latency, peak memory) and the headline ratios. Everything lands in
# out/pipeline/ (pipeline.md, pipeline.json, report/bench.md with plots). Extra flags go to
# `speechmpq pipeline`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SPEECHMPQ_VENV:-.venv}"
if [ ! -x "$VENV/bin/speechmpq" ]; then
    echo "creating $VENV and installing speechmpq with torch==2.13.0 (CPU build) ..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e '.[train,serve]' torch==2.13.0
fi
exec "$VENV/bin/speechmpq" pipeline "$@"
