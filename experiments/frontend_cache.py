"""Streaming with the front-end cache vs recomputing the conv stack every window.

    python experiments/frontend_cache.py --exact models/demo-mpq.onnx --data data/synth/test-clean \
        data/synth/test-other --group out/w2v2-fp32.onnx --out results/frontend_cache

For a layer-norm model (``--exact``): every utterance of ``--data`` streamed both ways, in the same
random piece sizes; counts identical transcripts and gives both WERs. For a group-norm model
(``--group``, e.g. the random-weight wav2vec2-base shape: no WER to measure) the committed frames'
logits both ways over the first utterances: relative deviation and frame-argmax agreement.
Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
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


def _stream(rec: Recognizer, samples: np.ndarray, seed: int) -> tuple[str, np.ndarray]:
    rng, stream, position, frames = np.random.default_rng(seed), rec.create_stream(), 0, []
    commit = stream._commit
    stream._commit = lambda done, ahead, last, final: (
        frames.append(done.copy()) or commit(done, ahead, last, final)
    )
    while position < samples.size:
        size = int(rng.integers(1600, 16000))
        stream.accept_waveform(samples[position : position + size], 16000)
        position += size
        rec.decode(stream)
    stream.input_finished()
    rec.decode(stream)
    return stream.result.text, np.concatenate(frames) if frames else np.zeros((0, 1), np.float32)


def _pair(path: str, threads: int) -> dict[str, Recognizer]:
    model = OnnxCTCModel(path, SessionConfig(threads=threads))
    return {
        cache: Recognizer(model, RecognizerConfig(streaming=StreamingConfig(frontend_cache=cache)))
        for cache in ("on", "off")
    }


def exact(path: str, data: list[str], threads: int) -> dict:
    recs = _pair(path, threads)
    utterances = [u for folder in data for u in read_dataset(folder)]
    texts = {"on": [], "off": []}
    for index, utterance in enumerate(tqdm(utterances, desc="layer-norm model, cache on/off")):
        samples = load_audio(utterance.path)
        for cache, rec in recs.items():
            texts[cache].append(_stream(rec, samples, index)[0])
    ids, refs = [u.utt_id for u in utterances], [u.transcript for u in utterances]
    same = sum(a == b for a, b in zip(texts["on"], texts["off"], strict=True))
    return {
        "model": path,
        "frontend_cache": recs["on"].info.frontend_cache,
        "utterances": len(ids),
        "identical_transcripts": same,
        "wer_cache_on": score_pairs(ids, refs, texts["on"])["wer"],
        "wer_cache_off": score_pairs(ids, refs, texts["off"])["wer"],
    }


def group(path: str, data: list[str], threads: int, count: int) -> dict:
    recs = _pair(path, threads)
    utterances = [u for folder in data for u in read_dataset(folder)][:count]
    deviations, agreement, frames = [], 0, 0
    for index, utterance in enumerate(tqdm(utterances, desc="group-norm model, cache on/off")):
        samples = load_audio(utterance.path)
        on, off = (_stream(recs[c], samples, index)[1] for c in ("on", "off"))
        deviations.append(float(np.abs(on - off).mean() / (np.abs(off).mean() + 1e-12)))
        agreement += int((on.argmax(-1) == off.argmax(-1)).sum())
        frames += off.shape[0]
    return {
        "model": path,
        "frontend_cache": recs["on"].info.frontend_cache,
        "utterances": len(utterances),
        "mean_relative_logit_deviation": float(np.mean(deviations)),
        "max_relative_logit_deviation": float(np.max(deviations)),
        "frame_argmax_agreement": agreement / max(frames, 1),
        "frames": frames,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact", help="a layer-norm (exact cache) .onnx")
    parser.add_argument("--group", help="a group-norm (approximate cache) .onnx")
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--group-utterances", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    facts = machine_facts()
    report = {
        "command": "python experiments/frontend_cache.py " + " ".join(argv),
        "machine": f"{facts['cpu']}, {facts['cores']} cores, {platform.machine()}, onnxruntime "
        f"{facts['versions'].get('onnxruntime')}",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if args.exact:
        report["exact"] = exact(args.exact, args.data, args.threads)
    if args.group:
        report["group"] = group(args.group, args.data, args.threads, args.group_utterances)
    atomic_write(args.out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    lines = [
        "# Front-end cache vs recomputing the conv stack per window",
        "",
        f"Command: `{report['command']}` ({report['machine']}, {report['date']}). Default streaming "
        "window of each model; both ways fed the same random piece sizes.",
        "",
    ]
    if "exact" in report:
        e = report["exact"]
        lines += [
            f"- layer-norm `{e['model']}` ({e['utterances']} utterances): identical transcripts "
            f"{e['identical_transcripts']} / {e['utterances']}; WER {100 * e['wer_cache_on']:.2f} % with "
            f"the cache, {100 * e['wer_cache_off']:.2f} % without."
        ]
    if "group" in report:
        g = report["group"]
        lines += [
            f"- group-norm `{g['model']}` ({g['utterances']} utterances, {g['frames']} frames; random "
            "weights, so no WER): committed logits deviate by "
            f"{100 * g['mean_relative_logit_deviation']:.2f} % "
            f"on average (max {100 * g['max_relative_logit_deviation']:.2f} %) of their mean magnitude; "
            f"frame argmax agrees on {100 * g['frame_argmax_agreement']:.1f} %. The runtime's default "
            '(`frontend_cache="auto"`) recomputes such front ends per window; `on` trades this for speed.'
        ]
    atomic_write(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
