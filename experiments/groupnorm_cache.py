"""What the front-end cache costs on a trained group-norm model: WER with the cache on vs recomputing.

    python experiments/groupnorm_cache.py --model runs/demo-gn/best \
        --dev data/synth-gn/dev-clean data/synth-gn/dev-other \
        --test data/synth-gn/test-clean data/synth-gn/test-other --out results/groupnorm_cache

The model (``--preset demo-gn``: the demo shape with wav2vec2-base's front-end norm, GroupNorm over
time on the first conv layer) is exported to FP32 .onnx with the cache. Utterances are joined in
groups of ``--join`` (0.3 s of silence between; one utterance is shorter than one window, where the
cache does nothing) and every joined stream is streamed with the model's recommended chunking
twice, cache on (each window's conv frames reused from the last window, normalised over that one) and
off (the convs recomputed over every window), greedy
CTC. The dev sets decide the runtime's policy for group-norm front ends (``frontend_cache="auto"``:
on only if the cache is not significantly worse, MAPSSWE one-sided alpha 0.025, on dev); the test
sets are decoded once, for the verdict. Per-chunk model time with and without the cache beside it.
Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speechmpq.audio import load_audio
from speechmpq.datasets import read_dataset
from speechmpq.files import atomic_write
from speechmpq.machine import machine_facts
from speechmpq.runtime import OnnxCTCModel, Recognizer, RecognizerConfig, SessionConfig, StreamingConfig
from speechmpq.scoring import score_pairs
from speechmpq.significance import mapsswe


def joined(folders: list[str], join: int) -> list[tuple[str, str, np.ndarray]]:
    """(id, reference, samples) of each group of ``join`` consecutive utterances, 0.3 s apart."""
    utterances = [u for folder in folders for u in read_dataset(folder)]
    gap = np.zeros(4800, np.float32)
    streams = []
    for start in range(0, len(utterances), join):
        group = utterances[start: start + join]
        audio = np.concatenate([piece for u in group for piece in (load_audio(u.path), gap)])
        streams.append((group[0].utt_id, " ".join(u.transcript for u in group), audio))
    return streams


def _decode(model: OnnxCTCModel, streams: list, cache: str) -> dict:
    recognizer = Recognizer(model, RecognizerConfig(streaming=StreamingConfig(frontend_cache=cache)))
    texts, seconds = [], []
    for _, _, samples in tqdm(streams, desc=f"cache {cache}", unit="stream", leave=False):
        stream = recognizer.create_stream()
        stream.accept_waveform(samples, 16000)
        stream.input_finished()
        recognizer.decode(stream)
        texts.append(stream.result.text)
        seconds += list(stream.compute_seconds)
    ids, refs = [s[0] for s in streams], [s[1] for s in streams]
    return {"ids": ids, "refs": refs, "texts": texts, "wer": score_pairs(ids, refs, texts)["wer"],
            "chunk_ms_p50": 1000 * float(np.median(seconds)), "frontend_cache": recognizer.frontend_cache}


def judge(model: OnnxCTCModel, folders: list[str], join: int) -> dict:
    streams = joined(folders, join)
    off, on = _decode(model, streams, "off"), _decode(model, streams, "on")
    test = mapsswe(off["refs"], off["texts"], on["texts"])  # positive: the cache makes more errors
    worse = test["significant"] and test["mean_difference"] > 0
    audio_seconds = sum(s[2].size for s in streams) / 16000
    return {"sets": folders, "streams": len(streams), "audio_seconds": audio_seconds,
            "wer_cache_off": off["wer"],
            "wer_cache_on": on["wer"], "difference_points": 100 * (on["wer"] - off["wer"]),
            "mapsswe": test, "cache_worse": bool(worse),
            "identical_transcripts": sum(a == b for a, b in zip(off["texts"], on["texts"], strict=True)),
            "chunk_ms_p50_cache_off": off["chunk_ms_p50"], "chunk_ms_p50_cache_on": on["chunk_ms_p50"]}


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = ["# The front-end cache on a trained group-norm model", "",
             f"Command: `{report['command']}`  ",
             f"Machine: {machine['cpu']}, {machine['cores']} cores; onnxruntime "
             f"{machine['versions']['onnxruntime']}; {machine['date']}.  ",
             f"Model: `{report['model']}` ({report['model_note']}), exported FP32 with the cache; "
             f"streams of {report['join']} utterances joined (0.3 s apart), streamed with its recommended "
             f"chunking ({report['chunking']}), greedy CTC.", "",
             "Chosen on dev (the runtime's policy for group-norm front ends), judged on test (decoded "
             "once). Cache worse = MAPSSWE one-sided alpha 0.025 (two-sided p shown); chunk ms = model "
             "time per window, p50.", "",
             "| data | role | streams (audio) | WER % cache off | WER % cache on | on − off (points) | p | "
             "cache worse | identical transcripts | chunk ms off | chunk ms on |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for role in ("dev", "test"):
        row = report.get(role)
        if row is None:
            continue
        lines.append(f"| {' + '.join(Path(s).name for s in row['sets'])} | {role} | {row['streams']} "
                     f"({row['audio_seconds'] / 60:.0f} min) | "
                     f"{100 * row['wer_cache_off']:.2f} | {100 * row['wer_cache_on']:.2f} | "
                     f"{row['difference_points']:+.2f} | {row['mapsswe']['p_value']:.3g} | "
                     f"{'yes' if row['cache_worse'] else 'no'} | {row['identical_transcripts']} | "
                     f"{row['chunk_ms_p50_cache_off']:.1f} | {row['chunk_ms_p50_cache_on']:.1f} |")
    lines += ["", f"Policy chosen on dev: **{report['policy']}**.", ""]
    if report.get("recipe"):
        commands = [f"    {line}" for line in report["recipe"].split(" && ")]
        lines += ["How the model was made:", "", *commands, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained group-norm model folder")
    parser.add_argument("--dev", nargs="+", required=True)
    parser.add_argument("--test", nargs="*", default=[])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--join", type=int, default=4, help="utterances per stream")
    parser.add_argument("--recipe", default="", help="how the model was made (commands), for the report")
    parser.add_argument("--out", type=Path, default=Path("results/groupnorm_cache"))
    parser.add_argument("--onnx", type=Path, default=None, help="export here (default OUT.onnx beside runs)")
    args = parser.parse_args(argv)
    from speechmpq.export import ExportConfig, Source, export_onnx

    onnx = args.onnx or Path("runs") / f"{args.model.name}-groupnorm.onnx"
    if not onnx.is_file():
        export_onnx(Source(model_dir=args.model), onnx, ExportConfig(), progress=False)
    model = OnnxCTCModel(onnx, SessionConfig(threads=args.threads))
    if model.info.frontend_norm != "group":
        raise SystemExit(f"error: {args.model} has a {model.info.frontend_norm}-norm front end, not group")
    config = json.loads((args.model / "config.json").read_text())
    report = {"command": "python experiments/groupnorm_cache.py " + " ".join(argv or sys.argv[1:]),
              "machine": machine_facts(), "model": str(args.model),
              "model_note": f"feat_extract_norm {config['feat_extract_norm']}, conv_dim "
                            f"{config['conv_dim']}, {config['num_hidden_layers']} layers",
              "chunking": f"chunk {model.info.chunk_ms} ms, left {model.info.left_context_ms} ms, "
                          f"right {model.info.right_context_ms} ms",
              "join": args.join, "recipe": args.recipe, "dev": judge(model, args.dev, args.join)}
    report["policy"] = ("cache off for group-norm front ends (it is significantly worse on dev)"
                        if report["dev"]["cache_worse"] else
                        "cache may be on for group-norm front ends (not significantly worse on dev)")
    if args.test:
        report["test"] = judge(model, args.test, args.join)
    atomic_write(args.out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write(args.out.with_suffix(".md"), markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
