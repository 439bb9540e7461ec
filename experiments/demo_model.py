"""Measure a trained model on every split of a synthetic corpus and write its report and card.

    python experiments/demo_model.py --model models/demo --corpus data/synth \
        --run runs/demo --results results/demo_model

writes ``results/demo_model.json`` and ``.md`` (WER/CER per split and voice group, with the command,
machine and date) and ``MODEL_DIR/README.md`` (the model card: training command, corpus, steps, wall
time, parameters, scores).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from speechmpq.files import atomic_write
from speechmpq.jobs.evaluation import evaluate, write_json
from speechmpq.train.run_folder import read_log

SPLITS = ("dev", "test-clean", "test-other")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def wall_seconds(records: list[dict]) -> float:
    """Wall time of a run, summed over its sessions (start/resume → last record before the next)."""
    total, session_start, last = 0.0, None, None
    for record in records:
        if record.get("event") in ("start", "resume"):
            if session_start is not None and last is not None:
                total += last - session_start
            session_start = last = record["time"]
        elif "time" in record:
            last = record["time"]
    if session_start is not None and last is not None:
        total += last - session_start
    return total


def training_facts(run: Path) -> dict:
    """Start config, steps, wall time and train hours from a run's train_log.jsonl."""
    records = read_log(run / "train_log.jsonl")
    start = next(r for r in records if r.get("event") == "start")
    steps = [r for r in records if "loss" in r]
    devs = [r for r in records if "dev_cer" in r]
    return {
        "config": start["config"], "device": start["device"], "bf16": start["bf16"],
        "parameters": start["parameters"], "train_hours": start["train_hours"],
        "train_utterances": start["train_utterances"],
        "steps": steps[-1]["step"] if steps else 0,
        "audio_hours_seen": steps[-1]["audio_hours_seen"] if steps else 0.0,
        "train_wall_seconds": round(wall_seconds(records), 0),
        "best_dev_cer": min((r["dev_cer"] for r in devs), default=None),
        # best/ holds the first checkpoint that reached the lowest dev CER
        "model_step": min(devs, key=lambda r: (r["dev_cer"], r["step"]))["step"] if devs else None,
        "final_loss": steps[-1]["loss"] if steps else None,
    }


def measure(model: Path, corpus: Path, out: Path, extra: dict[str, Path]) -> dict:
    scores = {}
    sets = {split: corpus / split for split in SPLITS if (corpus / split).is_dir()} | extra
    for split, data in sets.items():
        if data.exists():
            summary = evaluate(model, data, out=out / split, progress=False)
            scores[split] = {k: summary[k] for k in ("utterances", "ref_words", "wer", "cer")}
            scores[split]["groups"] = summary["groups"]
    return scores


def level_robustness(model_dir: Path, corpus: Path, as_stored: dict) -> dict:
    """test-clean scores with the input as stored, 20 dB quieter, and per-utterance normalised.

    The demo model reads raw samples (``do_normalize`` false) so that chunked streaming needs no
    whole-utterance statistics; training drew each utterance's peak level from -20..-1 dBFS. These
    rows show what that choice costs when the level of the input changes.
    """
    from speechmpq.datasets import read_dataset
    from speechmpq.scoring import score_pairs
    from speechmpq.train.evaluate import transcribe_torch
    from speechmpq.train.models import load_model

    utterances = read_dataset(corpus / "test-clean")
    model = load_model(model_dir)
    rows = {"as stored": {"wer": as_stored["wer"], "cer": as_stored["cer"]}}  # measured by measure()
    transforms = {
        "-20 dB": lambda x: x * 0.1,
        "per-utterance zero mean, unit variance": lambda x: (x - x.mean()) / (x.std() + 1e-7),
    }
    for name, transform in transforms.items():
        hyps = transcribe_torch(model, utterances, progress=False, input_transform=transform)
        scored = score_pairs([u.utt_id for u in utterances], [u.transcript for u in utterances], hyps)
        rows[name] = {"wer": scored["wer"], "cer": scored["cer"]}
    return rows


def _row(name: str, s: dict) -> str:
    return f"| {name} | {s['utterances']} | {s['ref_words']} | {100 * s['wer']:.2f} | {100 * s['cer']:.2f} |"


def score_table(scores: dict) -> str:
    lines = ["| split / voices | utterances | words | WER % | CER % |", "|---|---|---|---|---|"]
    for split, s in scores.items():
        lines.append(_row(split, s))
        if len(s["groups"]) > 1:
            for group, g in s["groups"].items():
                lines.append(_row(f"{split} / {group}", g))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True, help="the train-fp run folder")
    parser.add_argument("--results", type=Path, required=True, help="path stem for .json/.md")
    parser.add_argument("--train-command", required=True, help="the exact train-fp command")
    parser.add_argument("--corpus-command", required=True, help="the exact corpus command")
    parser.add_argument("--note", default="", help="a sentence added to the card (e.g. code commit)")
    parser.add_argument("--extra", nargs="*", default=[], metavar="NAME=PATH",
                        help="more evaluation sets (folder or manifest), e.g. real speech")
    args = parser.parse_args(argv)
    facts = training_facts(args.run)
    extra = dict(item.split("=", 1) for item in args.extra)
    scores = measure(args.model, args.corpus, args.results.parent / (args.results.name + "_eval"),
                     {name: Path(path) for name, path in extra.items()})
    corpus_stats = json.loads((args.corpus / "corpus.json").read_text())
    levels = level_robustness(args.model, args.corpus, scores["test-clean"])
    report = {
        "model": str(args.model), "date": datetime.date.today().isoformat(), "machine": machine(),
        "command": "python experiments/demo_model.py " + shlex.join(sys.argv[1:]),
        "train_command": args.train_command, "corpus_command": args.corpus_command,
        "corpus": corpus_stats, "training": facts, "scores": scores, "input_level": levels,
        "decoding": "greedy CTC, no lexicon or language model",
    }
    write_json(args.results.with_suffix(".json"), report)
    params = facts["parameters"]
    md = f"""# Demo model: measured accuracy

Measured {report['date']} on {report['machine']} by

    {report['command']}

Greedy CTC decoding, no lexicon or language model. Test splits are half voices heard in
training (`seen`) and half held-out espeak variants (`unseen`); `test-other` adds noise and/or reverb.

{score_table(scores)}

Input level (test-clean; the model reads raw samples, no per-utterance normalisation):

| input | WER % | CER % |
|---|---|---|
{chr(10).join(f"| {k} | {100 * v['wer']:.2f} | {100 * v['cer']:.2f} |" for k, v in levels.items())}

Model: {params['total']:,} parameters, transformer linear weights {params['transformer_linear_weights']:,}
({100 * params['transformer_linear_share']:.1f} %). This model is the step-{facts['model_step']} checkpoint
(lowest dev CER) of a run logged to step {facts['steps']}
({facts['audio_hours_seen']:.1f} h of audio seen, {facts['train_wall_seconds'] / 3600:.2f} h wall,
device {facts['device']}, bf16 {facts['bf16']}) on {facts['train_hours']:.1f} h of synthetic speech:

    {args.corpus_command}
    {args.train_command}

{args.note}
"""
    atomic_write(args.results.with_suffix(".md"), md)
    atomic_write(args.model / "README.md", model_card(report, md))
    print(md)
    return 0


def architecture(model_dir: str) -> str:
    """One sentence describing the model's shape, read from its config.json."""
    c = json.loads((Path(model_dir) / "config.json").read_text())
    stride, receptive = 1, 1
    for kernel, step in zip(c["conv_kernel"], c["conv_stride"], strict=True):
        receptive += (kernel - 1) * stride
        stride *= step
    norm = "pre-LN" if c.get("do_stable_layer_norm") else "post-LN"
    return (f"`{c['architectures'][0]}`, {c['num_hidden_layers']} {norm} transformer layers, hidden "
            f"{c['hidden_size']}, {c['num_attention_heads']} heads, FFN {c['intermediate_size']}; a "
            f"{len(c['conv_dim'])}-layer conv front end (channels {'/'.join(map(str, c['conv_dim']))}, "
            f"kernels {'/'.join(map(str, c['conv_kernel']))}, strides "
            f"{'/'.join(map(str, c['conv_stride']))}: {stride} samples = {stride / 16:.0f} ms per frame, "
            f"receptive field {receptive} samples, {c['feat_extract_norm']} norm); positional conv of "
            f"{c['num_conv_pos_embeddings']} taps in {c['num_conv_pos_embedding_groups']} groups")


def model_card(report: dict, measured: str) -> str:
    """The model directory's README: what the model is, how it was made, what it scores."""
    config = report["training"]["config"]
    return f"""---
language: en
library_name: transformers
pipeline_tag: automatic-speech-recognition
tags: [wav2vec2, ctc, speechmpq, synthetic-speech]
---

# speechmpq demo model (wav2vec2 architecture, CTC, trained from scratch)

The embedded default of speechmpq: a small `Wav2Vec2ForCTC` that every later stage (quantization,
ONNX export, streaming) is measured on. It recognises English read by the espeak-ng voices of the
speechmpq synthetic corpus; it has never heard human speech and is not meant to transcribe it.

- Architecture: {architecture(report['model'])}. The short conv front end trains several times
  faster per step than wav2vec2's 7-layer one at the same width (`results/frontend_step_time.json`).
- Vocabulary: the 32 LibriSpeech characters of facebook/wav2vec2-base-100h (`vocab.json`).
- Input: 16 kHz mono float samples, **no per-utterance normalisation** (`do_normalize: false`).
  Streaming cannot see a whole utterance, so the model was trained on raw samples whose peak level
  was drawn from -20..-1 dBFS instead; the input-level table below shows what this costs.
- Load it with `transformers.Wav2Vec2ForCTC.from_pretrained("models/demo")` or
  `speechmpq.train.models.load_model("models/demo")`.

## How it was made

    {report['corpus_command']}
    {report['train_command']}

AdamW (betas 0.9/0.98, weight decay {config['weight_decay']}), peak lr {config['lr']} after
{config['warmup_steps']} warm-up steps, cosine decay to {config['final_lr_ratio']} of it, batches of
{config['batch_seconds']:.0f} s of padded audio, bf16 autocast {report['training']['bf16']},
gradient clipping at {config['grad_clip']};
the checkpoint with the lowest dev CER (evaluated every {config['eval_every']} steps on
{config['dev_utterances']} dev utterances) is this model.

{measured}"""


if __name__ == "__main__":
    raise SystemExit(main())
