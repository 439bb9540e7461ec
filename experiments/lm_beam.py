"""How wide the LM beam search should be for the general English LM, chosen on real-speech dev.

    python experiments/lm_beam.py \
        --models whisper-base-ctc=out/whisper_models/whisper-base-ctc.onnx \
                 whisper-base-ctc-4bit=models/whisper-base-ctc-4bit.onnx \
                 whisper-tiny-ctc=out/whisper_models/whisper-tiny-ctc.onnx \
        --out results/lm_beam_whisper

The lexicon + n-gram LM decoder keeps --beam-size hypotheses (24 by default, tuned on the demo model's
72-word grammar); the general LM has 72k words. Per model, on dev: (1) the beam sizes --beams at the
model's LM weight and word score chosen on dev at beam 24 (results/whisper_models.json); (2) at the
chosen beam (the smallest within --tolerance points of the best dev WER: a wider beam costs decoding
time), the LM weight x word score grid again. Test is decoded once, at beam 24 with the old weights and
with the dev-chosen beam and weights. Offline (one window per utterance), 2 threads. Writes OUT.json
and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

WEIGHTS = (0.6, 0.8, 1.0)
SCORES = (0.0, 1.0)


def decode_all(model: Path, data: Path, lm: Path, settings: list[tuple[int, float, float]]) -> dict:
    """(beam, weight, score) -> {"wer", "cer", "decode_seconds"}: one model pass, every decoder
    (``speechmpq.jobs.verdicts.decode_sets``; its per-utterance TSVs go to a temporary folder)."""
    import tempfile

    from speechmpq.datasets import read_dataset
    from speechmpq.jobs.verdicts import decode_sets
    from speechmpq.runtime import DecoderConfig

    decoders = {f"{beam}/{weight}/{score}": DecoderConfig("lm", lm=str(lm), beam_size=beam, lm_weight=weight,
                                                          word_score=score)
                for beam, weight, score in settings}
    with tempfile.TemporaryDirectory() as tsv_root:
        results, seconds = decode_sets({"m": model}, {"set": read_dataset(data)}, decoders, Path(tsv_root),
                                       threads=2, progress=False)
    found = {}
    for (beam, weight, score), name in zip(settings, decoders, strict=True):
        rates, taken = results["m"]["set"][name], seconds["m"]["set"][name]
        found[(beam, weight, score)] = {"wer": rates["wer"], "cer": rates["cer"],
                                        "decode_seconds": round(taken, 2)}
        print(f"  {model.name} {data.name} beam {beam} weight {weight:g} score {score:g}: "
              f"WER {100 * rates['wer']:.1f} CER {100 * rates['cer']:.1f} ({taken:.1f} s)", file=sys.stderr)
    return found


def audio_seconds(data: Path) -> float:
    import soundfile

    from speechmpq.datasets import read_dataset

    return sum(soundfile.info(str(u.path)).duration for u in read_dataset(data))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, metavar="NAME=FILE.onnx")
    parser.add_argument("--dev", type=Path, default=Path("../shared/realspeech/manifest_crossref.tsv"))
    parser.add_argument("--test", type=Path, default=Path("../shared/realspeech/manifest.tsv"))
    parser.add_argument("--lm", type=Path, default=Path("models/en-us.lm.npz"))
    parser.add_argument("--tuning", type=Path, default=Path("results/whisper_models.json"),
                        help="each model's beam-24 LM weight and word score, chosen on dev")
    parser.add_argument("--beams", type=int, nargs="+", default=[24, 64, 128, 256, 512, 1024])
    parser.add_argument("--tolerance", type=float, default=0.5,
                        help="points of dev WER a smaller beam may lose")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from speechmpq.files import atomic_write
    from speechmpq.machine import machine_facts

    tuned = json.loads(args.tuning.read_text())["lm_tuning"]
    seconds = {"dev": audio_seconds(args.dev), "test": audio_seconds(args.test)}
    rows = []
    for item in args.models:
        name, path = item.split("=", 1)
        old = tuned[name]["chosen"]
        weight, score = old["lm_weight"], old["word_score"]
        sweep = decode_all(Path(path), args.dev, args.lm, [(b, weight, score) for b in args.beams])
        best = min(r["wer"] for r in sweep.values())
        beam = min(b for (b, _, _), r in sweep.items() if r["wer"] <= best + args.tolerance / 100)
        grid = decode_all(Path(path), args.dev, args.lm, [(beam, w, s) for w in WEIGHTS for s in SCORES])
        grid.update({k: v for k, v in sweep.items() if k[0] == beam})
        (_, weight2, score2), _ = min(grid.items(), key=lambda kv: (kv[1]["wer"], kv[0]))
        test = decode_all(Path(path), args.test, args.lm, [(24, weight, score), (beam, weight2, score2)])
        rows.append({"model": name, "file": path, "beam24_weights": old,
                     "dev_sweep": [{"beam": b, **r} for (b, _, _), r in sweep.items()],
                     "dev_grid": [{"lm_weight": w, "word_score": s, **r} for (_, w, s), r in grid.items()],
                     "chosen": {"beam_size": beam, "lm_weight": weight2, "word_score": score2},
                     "test": {"beam24": test[(24, weight, score)], "chosen": test[(beam, weight2, score2)]}})
    facts = machine_facts()
    result = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "machine": f"{facts['cpu']}, {facts['cores']} cores", "lm": str(args.lm),
              "audio_seconds": seconds, "tolerance_points": args.tolerance,
              "chosen_on": f"{args.dev} (real-speech dev)", "judged_on": f"{args.test} (real-speech test)",
              "rows": rows}
    atomic_write(args.out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    atomic_write(args.out.with_suffix(".md"), markdown(result))
    print(f"wrote {args.out.with_suffix('.md')}")
    return 0


def markdown(result: dict) -> str:
    dev_s, test_s = result["audio_seconds"]["dev"], result["audio_seconds"]["test"]
    lines = ["# How wide the general LM's beam search should be: chosen on real-speech dev", "",
             f"Command: `{result['command']}`  ", f"Machine: {result['machine']}; {result['date']}.", "",
             f"Chosen on: {result['chosen_on']}; judged on: {result['judged_on']}, decoded once per "
             f"setting below. LM `{result['lm']}`. Offline, one window per utterance; decode RTF = LM "
             "decoding time (the model's logits excluded) / audio time. The beam: the smallest within "
             f"{result['tolerance_points']:g} points of the best dev WER; then the LM weight and word score "
             "at that beam.", ""]
    for row in result["rows"]:
        lines += [f"## {row['model']}", "", "| beam | dev WER % | dev CER % | decode RTF |",
                  "|---:|---:|---:|---:|"]
        for r in row["dev_sweep"]:
            lines.append(f"| {r['beam']} | {100 * r['wer']:.1f} | {100 * r['cer']:.1f} | "
                         f"{r['decode_seconds'] / dev_s:.3f} |")
        chosen, test = row["chosen"], row["test"]
        lines += ["", f"Chosen on dev: beam {chosen['beam_size']}, LM weight {chosen['lm_weight']:g}, word "
                  f"score {chosen['word_score']:g} (at beam 24: {row['beam24_weights']['lm_weight']:g}, "
                  f"{row['beam24_weights']['word_score']:g}).", "",
                  "| test | WER % | CER % | decode RTF |", "|---|---:|---:|---:|"]
        for label, key in (("beam 24, beam-24 weights", "beam24"), ("dev-chosen", "chosen")):
            r = test[key]
            lines.append(f"| {label} | {100 * r['wer']:.1f} | {100 * r['cer']:.1f} | "
                         f"{r['decode_seconds'] / test_s:.3f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
