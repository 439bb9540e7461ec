"""Streaming WER against offline WER over chunk / left / right settings (picks the export defaults).

    .venv/bin/python experiments/streaming_sweep.py --model models/demo-mpq.onnx \
        --data data/synth/test-clean data/synth/test-other --out results/streaming_sweep

Writes OUT.json and OUT.md: per setting, WER streaming and offline on the same utterances, the
difference with its MAPSSWE p-value, the algorithmic latency (chunk + look-ahead) and the model
calls per second of audio.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime
from tqdm import tqdm

from speechmpq.audio import load_audio
from speechmpq.datasets import read_dataset
from speechmpq.files import atomic_write
from speechmpq.runtime import Recognizer, RecognizerConfig, SessionConfig, StreamingConfig
from speechmpq.scoring import score_pairs
from speechmpq.significance import mapsswe

SETTINGS = [  # chunk, left, right (ms)
    (640, 2560, 320), (640, 2560, 640), (640, 2560, 960), (640, 2560, 1280),
    (320, 2560, 640), (1280, 2560, 640), (640, 1280, 640), (640, 5120, 640),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--settings", nargs="+", default=None, metavar="CHUNK:LEFT:RIGHT",
                        help="settings to sweep, in ms (default: the demo model's sweep)")
    args = parser.parse_args()
    settings = SETTINGS if not args.settings else [tuple(int(v) for v in s.split(":")) for s in args.settings]
    utterances = [u for folder in args.data for u in read_dataset(folder)]
    audio = [load_audio(u.path) for u in tqdm(utterances, desc="load audio", unit="utt")]
    seconds = sum(a.size for a in audio) / 16000
    refs = [u.transcript for u in utterances]
    ids = [u.utt_id for u in utterances]
    base = Recognizer(args.model, RecognizerConfig(session=SessionConfig(threads=args.threads),
                                                   streaming=StreamingConfig(chunk_ms=0)))

    def run(streaming: StreamingConfig) -> tuple[list[str], int]:
        recognizer = Recognizer(base.model, RecognizerConfig(streaming=streaming))
        calls, hyps = 0, []
        for samples in tqdm(audio, desc=str(streaming), unit="utt", leave=False):
            stream = recognizer.create_stream()
            stream.accept_waveform(samples, 16000)
            stream.input_finished()
            calls += recognizer.decode(stream)
            hyps.append(stream.result.text)
        return hyps, calls

    offline, _ = run(StreamingConfig(chunk_ms=0))
    offline_wer = score_pairs(ids, refs, offline)["wer"]
    rows = []
    for chunk, left, right in settings:
        started = time.time()
        hyps, calls = run(StreamingConfig(chunk, left, right))
        test = mapsswe(refs, offline, hyps)
        wer = score_pairs(ids, refs, hyps)["wer"]
        identical = float(np.mean([h == o for h, o in zip(hyps, offline, strict=True)]))
        rows.append({"chunk_ms": chunk, "left_ms": left, "right_ms": right, "wer": wer,
                     "offline_wer": offline_wer, "streaming_minus_offline_wer": wer - offline_wer,
                     "p_value": test["p_value"], "significant": test["significant"],
                     "identical_fraction": identical,
                     "algorithmic_latency_ms": chunk + right, "calls_per_audio_second": calls / seconds,
                     "seconds": round(time.time() - started, 1)})
        print(json.dumps(rows[-1]), flush=True)
    result = {"model": args.model, "data": args.data, "utterances": len(utterances),
              "audio_hours": seconds / 3600, "machine": platform.processor() or platform.machine(),
              "onnxruntime": onnxruntime.__version__, "threads": args.threads,
              "date": datetime.date.today().isoformat(),
              "command": "python experiments/streaming_sweep.py --model " + args.model + " --data "
                         + " ".join(args.data) + f" --out {args.out}"
                         + (" --settings " + " ".join(args.settings) if args.settings else ""),
              "offline_wer": offline_wer, "settings": rows}
    atomic_write(args.out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    lines = [f"# Streaming vs offline WER: {args.model}", "",
             f"{len(utterances)} utterances ({seconds / 3600:.2f} h) from {', '.join(args.data)}; "
             f"greedy CTC; offline WER {100 * offline_wer:.2f} %. {result['date']}, {result['machine']}, "
             "onnxruntime "
             f"{onnxruntime.__version__}, {args.threads} threads.", "", f"Command: `{result['command']}`", "",
             "| chunk ms | left ms | right ms | WER % | streaming − offline | MAPSSWE p | identical "
             "transcripts | chunk + right ms | model calls per s audio |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['chunk_ms']} | {r['left_ms']} | {r['right_ms']} | {100 * r['wer']:.2f} | "
                     f"{100 * r['streaming_minus_offline_wer']:+.2f} | {r['p_value']:.3f} | "
                     f"{100 * r['identical_fraction']:.0f} % | {r['algorithmic_latency_ms']} | "
                     f"{r['calls_per_audio_second']:.2f} |")
    atomic_write(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
