"""Which head, encoder and unfreezing: every Whisper-encoder training run, judged on real-speech dev only.

    python experiments/whisper_heads.py --runs wtiny=runs/wtiny wtiny-h2=runs/wtiny-h2 ... \
        --out results/whisper_heads

Reads each train-fp run's log (its dev evaluations on ``manifest_crossref.tsv``, greedy, PyTorch) and
its init model's config, and tabulates: encoder, head, what trained, steps run, training time, the
dev CER/WER curve and the best point (the checkpoint ``best/`` holds). Nothing here decodes test data.
Writes OUT.json, OUT.md and OUT.png (dev CER against steps, one line per run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def run_facts(label: str, run: Path) -> dict:
    from speechmpq.train.run_folder import read_log

    records = read_log(run / "train_log.jsonl")
    start = next(r for r in records if r.get("event") == "start")
    config = start["config"]
    model = json.loads((Path(config["init_from"]) / "config.json").read_text())
    steps = [r for r in records if "loss" in r]
    devs = [r for r in records if "dev_cer" in r]
    best = min(devs, key=lambda r: (r["dev_cer"], r["step"]))
    trainable = config.get("trainable_encoder_layers")
    trainable = model.get("trainable_encoder_layers", 0) if trainable is None else trainable
    return {
        "label": label, "run": str(run), "config": config, "train_hours": start["train_hours"],
        "encoder": model.get("source", "?"),
        "layers": model["encoder_layers"], "d_model": model["d_model"],
        "head": f"{model['head_layers']} x {model['head_dim']} (k {model['head_kernel']})"
                + (", layer sum" if model.get("layer_sum") else "")
                + (", SpecAugment" if model.get("apply_spec_augment") else ""),
        "trained": "head" + (f" + top {trainable} layers" if trainable else "")
                   + (f", KL {config['kl_weight']} to {Path(config['teacher']).parent.name}"
                      if config.get("teacher") else ""),
        "lr": config["lr"], "planned_steps": config["steps"],
        "steps_run": steps[-1]["step"] if steps else 0,
        "train_minutes": round((steps[-1]["train_seconds"] if steps else 0) / 60, 1),
        "audio_hours_seen": steps[-1]["audio_hours_seen"] if steps else 0.0,
        "best_step": best["step"], "best_dev_cer": best["dev_cer"], "best_dev_wer": best["dev_wer"],
        "curve": [{"step": r["step"], "cer": r["dev_cer"], "wer": r["dev_wer"]} for r in devs],
    }


def render(data: dict) -> str:
    lines = ["# Whisper-encoder CTC runs: head, encoder and unfreezing chosen on real-speech dev", "",
             f"Command: `{data['command']}`  ", f"Date: {data['date']}. Machine: {data['machine']}.", "",
             "Dev: the 23 utterances of `manifest_crossref.tsv` (greedy, offline, PyTorch), evaluated every "
             "250 steps; best = the lowest dev CER (the checkpoint each run keeps). Runs stopped early "
             "(steps run < planned) were cut once their dev curve had stayed above the best run's. The test "
             "manifest is not read.", "",
             "| run | encoder | head | trained | lr | steps run / planned | train min | best step | "
             "dev CER % | dev WER % |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in data["runs"]:
        lines.append(f"| {r['label']} | {r['encoder']} | {r['head']} | {r['trained']} | {r['lr']} | "
                     f"{r['steps_run']} / {r['planned_steps']} | {r['train_minutes']} | {r['best_step']} | "
                     f"{100 * r['best_dev_cer']:.1f} | {100 * r['best_dev_wer']:.1f} |")
    chosen = min(data["runs"], key=lambda r: r["best_dev_cer"])
    lines += ["", f"Chosen on dev: **{chosen['label']}** (dev CER {100 * chosen['best_dev_cer']:.1f} %).",
              "", "![dev CER against training steps](whisper_heads.png)"]
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from speechmpq.files import atomic_output

    figure, axis = plt.subplots(figsize=(7, 4))
    for r in data["runs"]:
        axis.plot([p["step"] for p in r["curve"]], [100 * p["cer"] for p in r["curve"]], marker="o",
                  label=r["label"])
    axis.set_xlabel("training step")
    axis.set_ylabel("real-speech dev CER % (greedy)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)


def main() -> None:
    from speechmpq.files import atomic_write
    from speechmpq.machine import machine_facts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, metavar="LABEL=RUN")
    parser.add_argument("--out", default="results/whisper_heads")
    args = parser.parse_args()
    facts = machine_facts()
    data = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
            "machine": f"{facts['cpu']}, {facts['cores']} cores",
            "runs": [run_facts(label, Path(run))
                     for label, run in (item.split("=", 1) for item in args.runs)]}
    atomic_write(Path(args.out + ".json"), json.dumps(data, indent=1) + "\n")
    atomic_write(Path(args.out + ".md"), render(data))
    plot(data, Path(args.out + ".png"))
    print(render(data))


if __name__ == "__main__":
    main()
