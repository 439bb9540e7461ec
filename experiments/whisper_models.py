"""Every model on real and synthetic speech, greedy and with an LM, offline and streaming.

    python experiments/whisper_models.py \
        --models whisper-tiny-ctc=models/whisper-tiny-ctc demo=models/demo \
        --real-dev ../shared/realspeech/manifest_crossref.tsv --real-test ../shared/realspeech/manifest.tsv \
        --synth data/synth --general-lm models/en-us.lm.npz --grammar-lm models/lm.arpa.gz \
        --out results/whisper_models

Each model folder is exported to FP32 .onnx (``speechmpq export``, into --work) and decoded by the
runtime (2 threads), offline (one window) and streaming (the model's metadata chunking), greedy and
with the lexicon + n-gram LM decoder: the general English LM on real speech (its weight and word
score chosen per model on real-dev, a small grid), the grammar LM of the synthetic corpus on synthetic
speech (the runtime's defaults, tuned on the demo model's dev split). Real-test and the synthetic
test splits are decoded once with the dev-chosen settings. Paired MAPSSWE tests: every model against
the first on each set and decoder. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

LM_WEIGHTS = (0.3, 0.5, 0.8, 1.1)
WORD_SCORES = (0.0, 1.0, 2.0)


def export(label: str, folder: Path, work: Path) -> Path:
    """FOLDER exported to FP32 .onnx in WORK (redone when the folder's weights are newer); an .onnx
    given instead of a folder (a quantized model) is used as it is."""
    if folder.suffix == ".onnx":
        return folder
    out = work / f"{label}.onnx"
    if not out.is_file() or out.stat().st_mtime < (folder / "model.safetensors").stat().st_mtime:
        subprocess.run([sys.executable, "-m", "speechmpq", "export", str(folder), "--out", str(out),
                        "--quiet"], check=True)
    return out


def decode(model: Path, data: str, streaming: bool, lm: str | None, lm_weight=None, word_score=None,
           limit: int | None = None) -> dict:
    from speechmpq.audio import load_audio
    from speechmpq.datasets import read_dataset
    from speechmpq.jobs.evaluation import score_utterances
    from speechmpq.runtime import DecoderConfig, Recognizer, RecognizerConfig, SessionConfig, StreamingConfig

    utterances = read_dataset(data)[:limit]
    decoder = (DecoderConfig(method="lm", lm=lm, lm_weight=lm_weight, word_score=word_score) if lm
               else DecoderConfig(method="greedy"))
    config = RecognizerConfig(session=SessionConfig(threads=2), decoder=decoder,
                              streaming=StreamingConfig() if streaming else StreamingConfig(chunk_ms=0))
    recognizer = Recognizer(model, config)
    started = time.time()
    hypotheses = []
    for utterance in utterances:
        audio = load_audio(utterance.path, recognizer.info.sample_rate)  # through the configured chunking
        hypotheses.append(recognizer.transcribe(audio, recognizer.info.sample_rate))
    rows, rates = score_utterances(utterances, hypotheses)
    return {"wer": rates["wer"], "cer": rates["cer"], "utterances": rates["utterances"],
            "words": rates["ref_words"], "seconds": round(time.time() - started, 1),
            "references": [r["reference"] for r in rows], "hypotheses": [r["hypothesis"] for r in rows]}


def tune(model: Path, data: str, lm: str) -> dict:
    """The (lm_weight, word_score) with the lowest offline WER on DATA (ties: the lower weight)."""
    from tqdm import tqdm

    grid = list(itertools.product(LM_WEIGHTS, WORD_SCORES))
    results = []
    for weight, score in tqdm(grid, desc=f"tune LM on {Path(data).name}", unit="setting"):
        result = decode(model, data, False, lm, weight, score)
        results.append({"lm_weight": weight, "word_score": score, "wer": result["wer"], "cer": result["cer"]})
    best = min(results, key=lambda r: (r["wer"], r["cer"], r["lm_weight"]))
    return {"chosen": {"lm_weight": best["lm_weight"], "word_score": best["word_score"]}, "grid": results}


def main() -> None:
    from tqdm import tqdm

    from speechmpq.files import atomic_write
    from speechmpq.machine import machine_facts
    from speechmpq.significance import mapsswe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True,
                        help="LABEL=FOLDER or LABEL=FILE.onnx; the first is the subject")
    parser.add_argument("--real-dev", default="../shared/realspeech/manifest_crossref.tsv")
    parser.add_argument("--real-test", default="../shared/realspeech/manifest.tsv")
    parser.add_argument("--synth", default="data/synth")
    parser.add_argument("--synth-limit", type=int, default=None,
                        help="first N utterances per synthetic split")
    parser.add_argument("--general-lm", default="models/en-us.lm.npz")
    parser.add_argument("--grammar-lm", default="models/lm.arpa.gz")
    parser.add_argument("--work", default="out/whisper_models")
    parser.add_argument("--out", default="results/whisper_models")
    parser.add_argument("--card", nargs=3, action="append", default=[], metavar=("LABEL", "RUN", "COMMANDS"),
                        help="write LABEL's model card (README.md in its folder) from train-fp run RUN; "
                        "COMMANDS: how it was made, ' && '-separated")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    models = {}
    for item in args.models:
        label, _, folder = item.partition("=")
        models[label] = export(label, Path(folder), work)
    sets = {"real-dev": (args.real_dev, "dev", args.general_lm),
            "real-test": (args.real_test, "test", args.general_lm),
            "synth test-clean": (f"{args.synth}/test-clean", "test", args.grammar_lm),
            "synth test-other": (f"{args.synth}/test-other", "test", args.grammar_lm)}
    tuning = {label: tune(model, args.real_dev, args.general_lm) for label, model in models.items()}
    rows = []
    jobs = [(label, name, decoder, streaming) for label in models for name in sets
            for decoder in ("greedy", "lm") for streaming in (False, True)]
    for label, name, decoder, streaming in tqdm(jobs, desc="decode", unit="run"):
        data, role, lm = sets[name]
        settings = tuning[label]["chosen"] if decoder == "lm" and lm == args.general_lm else {}
        limit = args.synth_limit if name.startswith("synth") else None
        result = decode(models[label], data, streaming, lm if decoder == "lm" else None, limit=limit,
                        **settings)
        rows.append({"model": label, "set": name, "role": role, "decoder": decoder,
                     "lm": lm if decoder == "lm" else None, "settings": settings, "streaming": streaming,
                     **result})
    subject = next(iter(models))
    for row in rows:
        if row["model"] != subject:
            base = next(r for r in rows if r["model"] == subject and r["set"] == row["set"]
                        and r["decoder"] == row["decoder"] and r["streaming"] == row["streaming"])
            row["vs_subject"] = mapsswe(row["references"], base["hypotheses"], row["hypotheses"])
    facts = machine_facts()
    data = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "machine": f"{facts['cpu']}, {facts['cores']} cores", "facts": facts,
            "models": {label: str(path) for label, path in models.items()}, "sets": sets,
            "lm_tuning": tuning, "rows": rows,
            "chosen_on": "real-dev (LM weight and word score of the general LM, per model)",
            "judged_on": "real-test and the synthetic test splits, decoded once"}
    atomic_write(Path(args.out + ".json"), json.dumps(data, indent=1) + "\n")
    atomic_write(Path(args.out + ".md"), render(data))
    folders = {item.partition("=")[0]: Path(item.partition("=")[2]) for item in args.models}
    for label, run, commands in args.card:
        atomic_write(folders[label] / "README.md",
                     model_card(label, folders[label], Path(run), data, commands.split(" && ")))
    print(render(data))


def model_card(label: str, folder: Path, run: Path, data: dict, commands: list[str]) -> str:
    """The model folder's README: what it is, how it was made (COMMANDS), what it scores (DATA)."""
    config = json.loads((folder / "config.json").read_text())
    from whisper_heads import run_facts  # the same reading of a run's log as the run table

    facts = run_facts(label, run)
    rows = [r for r in data["rows"] if r["model"] == label]
    table = ["| set | role | decoder | mode | WER % | CER % |", "|---|---|---|---|---:|---:|"]
    table += [f"| {r['set']} | {r['role']} | {r['decoder']} | "
              f"{'streaming' if r['streaming'] else 'offline'} | {100 * r['wer']:.1f} | "
              f"{100 * r['cer']:.1f} |"
              for r in rows]
    chosen = data["lm_tuning"][label]["chosen"]
    frozen = config["encoder_layers"] - config["trainable_encoder_layers"]
    newline = "\n    "
    return f"""---
language: en
library_name: transformers
pipeline_tag: automatic-speech-recognition
tags: [whisper, ctc, speechmpq]
license: mit
---

# {label}: Whisper's pretrained encoder with a CTC head

- Encoder: {config['source']}: Whisper's audio encoder, {config['encoder_layers']} layers,
  d {config['d_model']}, {config['encoder_attention_heads']} heads, FFN {config['encoder_ffn_dim']}
  (MIT licence, OpenAI); the bottom {frozen} layers and the front end frozen at their pretrained values.
- Front end inside the model: Whisper's 80-bin log-mel (25 ms windows, 10 ms hop), normalised with a fixed
  ceiling ({config['mel_ceiling']} log10) instead of the utterance maximum, so a stream computes it as offline
  does; input: raw 16 kHz mono samples, no normalisation. 20 ms per output frame.
- Head: {config['head_layers']} conv block(s) of {config['head_dim']} channels, kernel
  {config['head_kernel']}, then a projection to the 32 LibriSpeech characters (CTC blank = `<pad>`).
- `speechmpq.train.models.load_model("{folder}")` loads it (`WhisperForCTC.from_pretrained` after
  `import speechmpq.train.whisper_ctc`).

## How it was made

    {newline.join(commands)}

Trained on {facts['train_hours']:.1f} h of the synthetic corpus (espeak-ng voices, noise and reverb) for
{facts['steps_run']} steps ({facts['audio_hours_seen']:.1f} h of audio seen, {facts['train_minutes']:.0f} min
of CPU training time), peak lr {facts['config']['lr']}; this is the step-{facts['best_step']} checkpoint, the
lowest CER on the real-speech dev set (23 utterances, `manifest_crossref.tsv`) among evaluations every
{facts['config']['eval_every']} steps. The real-speech test set (30 utterances, `manifest.tsv`) chose nothing.

## Accuracy

Measured {data['date']} on {data['machine']} by `{data['command']}` (results/whisper_models.md).
General LM (real speech): pocketsphinx's US English trigram, weight {chosen['lm_weight']}, word score
{chosen['word_score']} (chosen on real-dev); grammar LM (synthetic): the corpus's own.

{chr(10).join(table)}
"""


def render(data: dict) -> str:
    lines = ["# Models on real and synthetic speech: greedy and LM, offline and streaming", "",
             f"Command: `{data['command']}`  ", f"Machine: {data['machine']}; {data['date']}.", "",
             f"Chosen on: {data['chosen_on']}. Judged on: {data['judged_on']}. General LM: pocketsphinx's "
             "US English LM converted by `speechmpq lm --from-pocketsphinx`; grammar LM: the synthetic "
             "corpus's (`models/lm.arpa.gz`, runtime default weights). Streaming: each model's metadata "
             "chunking. p: MAPSSWE two-sided, against the first model on the same set and decoder.", "",
             "| set | role | model | decoder | mode | WER % | CER % | utterances | p vs first |",
             "|---|---|---|---|---|---:|---:|---:|---:|"]
    for row in data["rows"]:
        p = f"{row['vs_subject']['p_value']:.3g}" if "vs_subject" in row else "—"
        lines.append(f"| {row['set']} | {row['role']} | {row['model']} | {row['decoder']} | "
                     f"{'streaming' if row['streaming'] else 'offline'} | {100 * row['wer']:.1f} | "
                     f"{100 * row['cer']:.1f} | {row['utterances']} | {p} |")
    lines += ["", "LM settings chosen on real-dev (offline WER, grid of weight x word score):", ""]
    for label, tuning in data["lm_tuning"].items():
        chosen = tuning["chosen"]
        lines.append(f"- {label}: LM weight {chosen['lm_weight']}, word score {chosen['word_score']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
