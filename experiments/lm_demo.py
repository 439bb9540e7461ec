"""WER greedy and with the LM, and the lossless verdicts MPQ vs FP32, on several test sets in one run.

    python experiments/lm_demo.py --fp32 out/demo-fp32.onnx --mpq models/demo-mpq.onnx \\
        --lm models/lm.arpa.gz --sets seen-text=data/synth/test-clean,data/synth/test-other \\
        heldout-text=data/heldout/test-clean,data/heldout/test-other \\
        realspeech=../shared/realspeech/manifest.tsv --verdict-sets seen-text heldout-text \\
        --out results/lm_demo

Decoded greedy and with the lexicon + n-gram LM decoder (the runtime's defaults unless given) by
``speechmpq.jobs.verdicts``: per-utterance TSVs under OUT_tsv/ (``speechmpq eval --compare`` reads
them); for each ``--verdict-sets`` set, MPQ against FP32 decoded the same way (MAPSSWE p at alpha
0.05, bootstrap 95 % interval of the WER difference). Writes OUT.json and OUT.md.

The dev/test protocol (``speechmpq verdict-corpora``): ``--role dev`` for runs that choose a setting,
``--role test --chosen-on WHERE`` for a final verdict (WHERE: the dev results that chose the plan's
settings); both are written at the top of the report. Runs made before the protocol say so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from speechmpq.datasets import read_dataset
from speechmpq.files import atomic_write
from speechmpq.jobs.verdicts import decode_sets, judge, results_table, verdicts_table
from speechmpq.machine import machine_facts
from speechmpq.runtime import DecoderConfig
from speechmpq.runtime.decoding import LM_WEIGHT, WORD_SCORE


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fp32", type=Path, required=True, help="the reference model (.onnx)")
    parser.add_argument("--mpq", type=Path, required=True, help="the candidate judged against it (.onnx)")
    parser.add_argument("--names", nargs=2, default=["fp32", "mpq"], metavar=("REFERENCE", "CANDIDATE"),
                        help="labels of the two models in the report (e.g. old-fp32 new-fp32)")
    parser.add_argument("--lm", type=Path, required=True)
    parser.add_argument("--sets", nargs="+", required=True, help="NAME=FOLDER[,FOLDER...]")
    parser.add_argument("--pool", nargs="+", default=[], help="NAME=SET+SET...: pooled sets (rows, verdicts)")
    parser.add_argument("--verdict-sets", nargs="+", default=[])
    parser.add_argument("--beam-size", type=int, default=24)
    parser.add_argument("--lm-weight", type=float, default=LM_WEIGHT)
    parser.add_argument("--word-score", type=float, default=WORD_SCORE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--role", choices=["dev", "test"], default=None,
                        help="dev: these sets choose settings; test: they only judge (needs --chosen-on)")
    parser.add_argument("--chosen-on", default=None,
                        help="with --role test: which dev results chose the candidate's settings")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.role == "test" and not args.chosen_on:
        parser.error("--role test needs --chosen-on (the dev results that chose the settings)")
    sets = {}
    for entry in args.sets:
        name, _, folders = entry.partition("=")
        sets[name] = [u for folder in folders.split(",") for u in read_dataset(folder)]
    pools = {}
    for entry in args.pool:
        name, _, members = entry.partition("=")
        pools[name] = members.split("+")
    tsv_root = args.out.parent / f"{args.out.name}_tsv"
    decoders = {"greedy": DecoderConfig("greedy"),
                "lm": DecoderConfig("lm", args.beam_size, lm=str(args.lm), lm_weight=args.lm_weight,
                                    word_score=args.word_score)}
    reference, candidate = args.names
    results, seconds = decode_sets({reference: args.fp32, candidate: args.mpq}, sets, decoders, tsv_root,
                                   pools, threads=args.threads)
    verdicts = judge(tsv_root, reference, candidate, args.verdict_sets, list(decoders))
    facts = machine_facts()
    report = {"command": "python experiments/lm_demo.py " + " ".join(argv),
              "machine": f"{facts['cpu']}, {facts['cores']} cores, onnxruntime "
                         f"{facts['versions'].get('onnxruntime')}",
              "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "decoder": {"beam_size": args.beam_size, "lm_weight": args.lm_weight,
                          "word_score": args.word_score, "lm": str(args.lm)},
              "protocol": protocol(args.role, args.chosen_on),
              "names": args.names, "results": results, "decode_seconds": seconds, "verdicts": verdicts}
    atomic_write(args.out.parent / f"{args.out.name}.json", json.dumps(report, indent=1) + "\n")
    atomic_write(args.out.parent / f"{args.out.name}.md", markdown(report))
    print(markdown(report))
    return 0


def protocol(role: str | None, chosen_on: str | None) -> dict:
    """Which data chose the candidate's settings and which data these sets are."""
    if role is None:
        return {"role": None, "chosen_on": None,
                "text": "Role of these sets not stated: a run made before the dev/test protocol "
                        "(speechmpq verdict-corpora), whose settings may have been chosen on these sets."}
    if role == "dev":
        return {"role": "dev", "chosen_on": chosen_on,
                "text": "Dev sets: these figures choose settings; they are not a verdict."}
    return {"role": "test", "chosen_on": chosen_on,
            "text": f"Test sets, decoded only for this verdict. Settings chosen on: {chosen_on}."}


def markdown(report: dict) -> str:
    d = report["decoder"]
    lines = ["# WER greedy and with the LM, and verdicts of one model against another", "",
             f"Command: `{report['command']}`", "",
             report.get("protocol", protocol(None, None))["text"], "",
             f"Machine: {report['machine']}; {report['date']}. "
             f"Offline (one window per utterance). LM decoder: `{d['lm']}`, beam {d['beam_size']}, "
             f"LM weight {d['lm_weight']}, word score {d['word_score']}.", "",
             *results_table(report["results"])]
    if report["verdicts"]:
        reference, candidate = report.get("names", ["fp32", "mpq"])
        lines += ["", f"{candidate} against {reference} decoded the same way (MAPSSWE, alpha 0.05; bootstrap "
                  f"95 % interval of WER({candidate}) - WER({reference}), points; 'lossless' = not "
                  "significantly worse):", "", *verdicts_table(report["verdicts"], reference, candidate)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
