"""The general English LM for real speech: what loading it costs the runtime.

    speechmpq lm --from-pocketsphinx --out models/en-us.lm.npz
    python experiments/general_lm.py --lm models/en-us.lm.npz --arpa out/general_lm/en-us.arpa \
        --repetitions 3 --out results/general_lm

Each measurement is a fresh process that imports the runtime, then loads the LM (``NGramLM``) and
builds the lexicon trie the decoder searches (``Lexicon.read`` of the lexicon beside the LM, in the
LibriSpeech characters every speechmpq model uses): load seconds (LM, lexicon, both) and the process's
peak RSS (VmHWM), medians over repetitions, for the array file and, if given, the same model as ARPA
text. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from speechmpq.files import atomic_write
from speechmpq.machine import machine_facts

CHILD = """
import json, sys, time
from pathlib import Path
from speechmpq.runtime.lm import Lexicon, NGramLM
from speechmpq.runtime.memory import process_memory
from speechmpq.vocab import VOCAB
spec = json.loads(sys.argv[1])
tokens = list(VOCAB)
began = time.perf_counter()
lm = NGramLM(spec["lm"])
loaded = time.perf_counter()
lexicon = Lexicon.read(spec["lexicon"], tokens, "|", lm)
built = time.perf_counter()
print(json.dumps({"lm_seconds": loaded - began, "lexicon_seconds": built - loaded,
                  "total_seconds": built - began, "peak_rss_mib": process_memory()["hwm_mib"],
                  "words": len(lm.words), "ngrams": lm.ngrams, "trie_nodes": lexicon.nodes}))
"""


def _child(lm: str, lexicon: str) -> dict:
    spec = json.dumps({"lm": lm, "lexicon": lexicon})
    done = subprocess.run([sys.executable, "-c", CHILD, spec], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def render(data: dict) -> str:
    lines = ["# The general English LM: load time and memory in the runtime", "",
             f"Command: `{data['command']}`  ", f"Made by: `{data['made_by']}`  ",
             f"Machine: {data['machine']}; {data['date']}.", "",
             f"Fresh process per measurement (numpy + the runtime imported first), medians over "
             f"{data['repetitions']} repetitions. LM = `NGramLM(path)`; lexicon = `Lexicon.read` (the trie "
             "with smeared look-ahead the beam search walks). Peak RSS = the process's VmHWM.", "",
             "| file | MB | words | n-grams | LM s | lexicon s | total s | peak RSS MiB |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for row in data["rows"]:
        ngrams = ", ".join(f"{n}: {count:,}" for n, count in sorted(row["ngrams"].items()))
        lines.append(f"| `{row['file']}` | {row['mb']:.1f} | {row['words']:,} | {ngrams} | "
                     f"{row['lm_seconds']:.2f} | {row['lexicon_seconds']:.2f} | {row['total_seconds']:.2f} | "
                     f"{row['peak_rss_mib']:.0f} |")
    target = data["target"]
    best = data["rows"][0]
    verdict = best["total_seconds"] <= target["seconds"] and best["peak_rss_mib"] <= target["rss_mib"]
    lines += ["", f"Target: loads in <= {target['seconds']} s and <= {target['rss_mib']} MB on this machine: "
              f"**{'met' if verdict else 'missed'}** by `{best['file']}`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", default="models/en-us.lm.npz")
    parser.add_argument("--lexicon", default=None, help="default: NAME.lexicon.txt beside --lm")
    parser.add_argument("--arpa", default=None, help="the same LM as ARPA text, measured beside")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--out", default="results/general_lm")
    args = parser.parse_args()
    lexicon = args.lexicon or str(Path(args.lm).with_name(Path(args.lm).name.removesuffix(".npz")
                                                          + ".lexicon.txt"))
    rows = []
    for path in [args.lm] + ([args.arpa] if args.arpa else []):
        runs = [_child(path, lexicon) for _ in range(args.repetitions)]
        row = {key: statistics.median(r[key] for r in runs)
               for key in ("lm_seconds", "lexicon_seconds", "total_seconds", "peak_rss_mib")}
        rows.append({"file": path, "mb": Path(path).stat().st_size / 1e6, **row, "words": runs[0]["words"],
                     "ngrams": runs[0]["ngrams"], "trie_nodes": runs[0]["trie_nodes"], "runs": runs})
    facts = machine_facts()
    data = {"command": "python " + " ".join(sys.argv), "made_by": "speechmpq lm --from-pocketsphinx "
            f"--out {args.lm}", "machine": f"{facts['cpu']}, {facts['cores']} cores",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "facts": facts, "repetitions": args.repetitions,
            "target": {"seconds": 5, "rss_mib": 150}, "rows": rows}
    atomic_write(Path(args.out + ".json"), json.dumps(data, indent=1) + "\n")
    atomic_write(Path(args.out + ".md"), render(data))
    print(render(data))


if __name__ == "__main__":
    main()
