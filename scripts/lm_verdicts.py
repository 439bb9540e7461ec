"""WER greedy and with the LM, and the lossless verdicts MPQ vs FP32, on several test sets in one run.

    python scripts/lm_verdicts.py --fp32 out/demo-fp32.onnx --mpq models/demo-mpq.onnx \\
        --lm models/lm.arpa.gz --sets seen-text=data/synth/test-clean,data/synth/test-other \\
        heldout-text=data/heldout/test-clean,data/heldout/test-other \\
        realspeech=../shared/realspeech/manifest.tsv --verdict-sets seen-text heldout-text \\
        --out results/lm_demo

Per model and set, offline logits (one window per utterance) are computed once and decoded two
ways: greedy and with the lexicon + n-gram LM decoder (the runtime's defaults unless given). Each
(model, set, decoder) gets a per-utterance TSV in the format of ``speechmpq eval`` under
OUT_tsv/ (so ``speechmpq eval --compare`` reads them), and for each ``--verdict-sets`` set the
report gives MPQ against FP32 decoded the same way: MAPSSWE p (alpha 0.05) and the bootstrap 95 %
interval of the WER difference. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from speechmpq.audio import load_audio
from speechmpq.datasets import read_dataset
from speechmpq.evaluation import compare_tsv, score_utterances, write_rows_tsv
from speechmpq.files import atomic_write
from speechmpq.runtime.bench import machine_facts
from speechmpq.runtime.decoding import DecoderConfig, build_decoder
from speechmpq.runtime.session import OnnxCTCModel, SessionConfig

ALPHA = 0.05


def decode(decoder, logits) -> str:
    state = decoder.initial()
    decoder.advance(state, logits)
    return " ".join(decoder.text(state).split())


def write_tsv(path: Path, utterances, hypotheses: list[str]) -> dict:
    rows, rates = score_utterances(utterances, hypotheses)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_rows_tsv(path, rows)
    return rates


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fp32", type=Path, required=True)
    parser.add_argument("--mpq", type=Path, required=True)
    parser.add_argument("--lm", type=Path, required=True)
    parser.add_argument("--sets", nargs="+", required=True, help="NAME=FOLDER[,FOLDER...]")
    parser.add_argument("--pool", nargs="+", default=[], help="NAME=SET+SET...: pooled sets (rows, verdicts)")
    parser.add_argument("--verdict-sets", nargs="+", default=[])
    parser.add_argument("--beam-size", type=int, default=24)
    parser.add_argument("--lm-weight", type=float, default=DecoderConfig.lm_weight)
    parser.add_argument("--word-score", type=float, default=DecoderConfig.word_score)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sets = {}
    for entry in args.sets:
        name, _, folders = entry.partition("=")
        sets[name] = [u for folder in folders.split(",") for u in read_dataset(folder)]
    pools = {}
    for entry in args.pool:
        name, _, members = entry.partition("=")
        pools[name] = members.split("+")
    tsv_root = args.out.parent / f"{args.out.name}_tsv"
    results: dict = {}
    seconds: dict = {}
    kept: dict = {}
    for model_name, path in (("fp32", args.fp32), ("mpq", args.mpq)):
        model = OnnxCTCModel(path, SessionConfig(threads=args.threads))
        info = model.info
        decoders = {"greedy": build_decoder(DecoderConfig("greedy"), info.tokens, info.blank_id,
                                            info.word_delimiter),
                    "lm": build_decoder(DecoderConfig("lm", args.beam_size, lm=str(args.lm),
                                                      lm_weight=args.lm_weight, word_score=args.word_score),
                                        info.tokens, info.blank_id, info.word_delimiter)}
        for set_name, utterances in sets.items():
            hypotheses = {name: [] for name in decoders}
            timing = {name: 0.0 for name in decoders}
            for utterance in tqdm(utterances, desc=f"{model_name} {set_name}", unit="utt"):
                logits = model.logits(load_audio(utterance.path, info.sample_rate))[0]
                for name, decoder in decoders.items():
                    began = time.perf_counter()
                    hypotheses[name].append(decode(decoder, logits))
                    timing[name] += time.perf_counter() - began
            for name in decoders:
                tsv = tsv_root / model_name / set_name / name / "utterances.tsv"
                results.setdefault(model_name, {}).setdefault(set_name, {})[name] = write_tsv(
                    tsv, utterances, hypotheses[name])
                seconds.setdefault(model_name, {}).setdefault(set_name, {})[name] = timing[name]
                kept.setdefault((model_name, name), {})[set_name] = hypotheses[name]
        for pool, members in pools.items():
            utterances = [u for member in members for u in sets[member]]
            for name in decoders:
                texts = [t for member in members for t in kept[(model_name, name)][member]]
                tsv = tsv_root / model_name / pool / name / "utterances.tsv"
                results[model_name].setdefault(pool, {})[name] = write_tsv(tsv, utterances, texts)
    verdicts = {}
    for set_name in args.verdict_sets:
        for name in ("greedy", "lm"):
            compared = compare_tsv(tsv_root / "fp32" / set_name / name / "utterances.tsv",
                                   tsv_root / "mpq" / set_name / name / "utterances.tsv")
            test = compared["mapsswe"]
            worse = bool(test["p_value"] < ALPHA and test["mean_difference"] > 0)
            verdicts.setdefault(set_name, {})[name] = {
                "utterances": compared["utterances"], "wer_fp32": compared["wer_a"],
                "wer_mpq": compared["wer_b"], "p_value": test["p_value"],
                "bootstrap_interval": compared["bootstrap"]["interval"], "lossless": not worse}
    facts = machine_facts()
    report = {"command": "python scripts/lm_verdicts.py " + " ".join(argv),
              "machine": f"{facts['cpu']}, {facts['cores']} cores, onnxruntime "
                         f"{facts['versions'].get('onnxruntime')}",
              "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "decoder": {"beam_size": args.beam_size, "lm_weight": args.lm_weight,
                          "word_score": args.word_score, "lm": str(args.lm)},
              "results": results, "decode_seconds": seconds, "verdicts": verdicts}
    atomic_write(args.out.parent / f"{args.out.name}.json", json.dumps(report, indent=1) + "\n")
    atomic_write(args.out.parent / f"{args.out.name}.md", markdown(report))
    print(markdown(report))
    return 0


def markdown(report: dict) -> str:
    d = report["decoder"]
    lines = ["# Demo model: WER greedy and with the LM, and MPQ vs FP32 verdicts", "",
             f"Command: `{report['command']}`", "", f"Machine: {report['machine']}; {report['date']}. "
             f"Offline (one window per utterance). LM decoder: `{d['lm']}`, beam {d['beam_size']}, "
             f"LM weight {d['lm_weight']}, word score {d['word_score']}.", "",
             "| model | set | utterances | greedy WER % | greedy CER % | LM WER % | LM CER % "
             "| by voice (LM WER %) |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for model, sets in report["results"].items():
        for set_name, by_decoder in sets.items():
            g, lm = by_decoder["greedy"], by_decoder["lm"]
            groups = ", ".join(f"{k} {100 * v['wer']:.1f}" for k, v in lm["groups"].items())
            lines.append(f"| {model} | {set_name} | {g['utterances']} | {100 * g['wer']:.2f} | "
                         f"{100 * g['cer']:.2f} | {100 * lm['wer']:.2f} | {100 * lm['cer']:.2f} | {groups} |")
    if report["verdicts"]:
        lines += ["", "MPQ against FP32 decoded the same way (MAPSSWE, alpha 0.05; bootstrap 95 % interval "
                  "of WER(MPQ) - WER(FP32), points):", "",
                  "| set | decoder | utterances | FP32 WER % | MPQ WER % | p | interval | lossless |",
                  "|---|---|---:|---:|---:|---:|---|---|"]
        for set_name, by_decoder in report["verdicts"].items():
            for name, v in by_decoder.items():
                low, high = v["bootstrap_interval"]
                lines.append(f"| {set_name} | {name} | {v['utterances']} | {100 * v['wer_fp32']:.2f} | "
                             f"{100 * v['wer_mpq']:.2f} | {v['p_value']:.3f} | [{100 * low:+.2f}, "
                             f"{100 * high:+.2f}] | {'yes' if v['lossless'] else 'NO'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
