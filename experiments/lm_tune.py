"""Tune the LM decoder's weights on a dev split: logits computed once, decoded many ways.

    python experiments/lm_tune.py --model models/demo-mpq.onnx --lm models/lm.arpa.gz \\
        --data data/synth/dev --utterances 300 --out results/lm_tune

Offline logits (one window per utterance) of ``--utterances`` utterances are cached, then every
(lm_weight, word_score) pair of the grid is decoded at ``--beam-size`` and scored (WER, CER);
greedy decoding of the same logits is the first row; ``--beam-sizes`` and ``--prunes``
trade decoding time for accuracy. Writes OUT.json and OUT.md; choose the
weights here on dev, never on a test split.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from speechmpq.audio import load_audio
from speechmpq.datasets import read_dataset
from speechmpq.files import atomic_write
from speechmpq.machine import machine_facts
from speechmpq.runtime import DecoderConfig, GreedyDecoder, OnnxCTCModel, SessionConfig, build_decoder
from speechmpq.scoring import score_pairs


def decode_all(decoder, logits: list) -> tuple[list[str], float]:
    started, texts = time.perf_counter(), []
    for frames in logits:
        state = decoder.initial()
        decoder.advance(state, frames)
        texts.append(" ".join(decoder.text(state).split()))
    return texts, time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--lm", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--utterances", type=int, default=300)
    parser.add_argument("--beam-sizes", type=int, nargs="+", default=[16])
    parser.add_argument("--prunes", type=float, nargs="+", default=[5.0],
                        help="per frame, tokens within this many nats of the best are tried")
    parser.add_argument("--lm-weights", type=float, nargs="+", default=[0.4, 0.6, 0.8, 1.0, 1.3])
    parser.add_argument("--word-scores", type=float, nargs="+", default=[-1.0, 0.0, 1.0, 2.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    model = OnnxCTCModel(args.model, SessionConfig(threads=args.threads))
    info = model.info
    utterances = read_dataset(args.data)[: args.utterances]
    logits = [model.logits(load_audio(u.path))[0] for u in tqdm(utterances, desc="logits")]
    references = [u.transcript for u in utterances]
    ids = [u.utt_id for u in utterances]
    rows = []

    def score(label: dict, texts: list[str], seconds: float) -> None:
        scored = score_pairs(ids, references, texts)
        frames = sum(x.shape[0] for x in logits)
        rows.append({**label, "wer": scored["wer"], "cer": scored["cer"],
                     "ms_per_second_of_audio": 1000 * seconds / (frames * info.frame_stride_samples
                                                                 / info.sample_rate)})
        print(json.dumps(rows[-1]), flush=True)

    score({"decoder": "greedy"}, *decode_all(GreedyDecoder(info.tokens, info.blank_id,
                                                           info.word_delimiter), logits))
    for beam, prune, weight, word in itertools.product(args.beam_sizes, args.prunes, args.lm_weights,
                                                       args.word_scores):
        config = DecoderConfig("lm", beam, lm=str(args.lm), lm_weight=weight, word_score=word)
        decoder = build_decoder(config, info.tokens, info.blank_id, info.word_delimiter)
        decoder.prune = prune
        score({"decoder": "lm", "lm_weight": weight, "word_score": word, "beam_size": beam, "prune": prune},
              *decode_all(decoder, logits))
    best = min((r for r in rows if r["decoder"] == "lm"), key=lambda r: r["wer"])
    facts = machine_facts()
    report = {"command": "python experiments/lm_tune.py " + " ".join(argv),
              "machine": f"{facts['cpu']}, {facts['cores']} cores",
              "date": datetime.datetime.now().isoformat(timespec="seconds"), "rows": rows, "best": best}
    atomic_write(args.out.parent / f"{args.out.name}.json", json.dumps(report, indent=1) + "\n")
    lines = [f"# LM decoder weights on {args.data} ({len(utterances)} utterances)", "",
             f"Command: `{report['command']}` ({report['machine']}, {report['date']}). Offline logits; "
             "ms of decoding per second of audio.", "",
             "| decoder | lm weight | word score | beam | prune (nats) | WER % | CER % "
             "| decode ms / s audio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['decoder']} | {r.get('lm_weight', '-')} | {r.get('word_score', '-')} | "
                     f"{r.get('beam_size', '-')} | {r.get('prune', '-')} | {100 * r['wer']:.2f} | "
                     f"{100 * r['cer']:.2f} | "
                     f"{r['ms_per_second_of_audio']:.1f} |")
    lines += ["", f"Best: lm weight {best['lm_weight']}, word score {best['word_score']}, beam "
              f"{best['beam_size']}, prune {best['prune']}: WER {100 * best['wer']:.2f} %."]
    atomic_write(args.out.parent / f"{args.out.name}.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
