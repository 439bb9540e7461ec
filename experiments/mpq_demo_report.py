"""Build results/mpq_demo.{md,json} and its plots from a folder written by mpq_experiments.

    python experiments/mpq_demo_report.py --runs runs/mpq-gpu --out results/mpq_demo \\
        --machine "1x NVIDIA H100 80GB, 16 cores" --command "bash scripts/mpq_gpu.sh 300 60 4"

Lossless = no statistically significant WER increase over FP32 (MAPSSWE, alpha 0.05) on the
pooled test set (test-clean + test-other, 600 utterances); p-values per split are in the JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

from mpq_demo import ONE_STAGE_TARGETS, SPLITS, TWO_STAGE_TARGETS, systems

from speechmpq.files import atomic_output, atomic_write
from speechmpq.jobs.evaluation import read_tsv, write_json
from speechmpq.significance import mapsswe
from speechmpq.train.run_folder import read_log

TEST_SPLITS = ("test-clean", "test-other")
METHOD_NAMES = ("one-stage", "two-stage", "uniform")


def _load(runs: Path, name: str) -> dict | None:
    folder = runs / name
    evals = {s: folder / "eval" / s for s in SPLITS}
    if not all((e / "summary.json").is_file() for e in evals.values()):
        return None
    row = {"system": name, "eval": {s: json.loads((e / "summary.json").read_text())
                                   for s, e in evals.items()}}
    row["tsv"] = {s: read_tsv(e / "utterances.tsv") for s, e in evals.items()}
    if (folder / "summary.json").is_file():
        row["summary"] = json.loads((folder / "summary.json").read_text())
        row["bitplan"] = json.loads((folder / "bitplan.json").read_text())
    return row


def _significance(fp32: dict, row: dict) -> dict:
    out = {}
    for label, splits in [(s, (s,)) for s in SPLITS] + [("test", TEST_SPLITS)]:
        refs, hyp_fp, hyp_q = [], [], []
        for split in splits:
            for utt_id, ref_row in fp32["tsv"][split].items():
                refs.append(ref_row["reference"])
                hyp_fp.append(ref_row["hypothesis"])
                hyp_q.append(row["tsv"][split][utt_id]["hypothesis"])
        test = mapsswe(refs, hyp_fp, hyp_q)
        out[label] = {"p_value": test["p_value"], "mean_difference": test["mean_difference"],
                      "segments": test["segments"],
                      "worse": bool(test["significant"] and test["mean_difference"] > 0)}
    return out


def steady_seconds(folder: Path, summary: dict) -> float | None:
    """Compression time rebuilt from the median logged seconds per step of each phase (plus the
    sensitivity stage as measured): robust to other jobs briefly sharing the machine."""
    log = folder / "train_log.jsonl"
    if not log.is_file() or not summary:
        return None
    records = read_log(log)
    total = summary["phase_seconds"].get("sensitivity", 0.0)
    for phase in summary["phase_seconds"]:
        if phase == "sensitivity":
            continue
        per_step = [r["sec_per_step"] for r in records if r.get("phase") == phase and "sec_per_step" in r]
        steps = summary["pass2_steps"] if phase == "pass2" else summary["steps"]
        if not per_step:
            return None
        total += statistics.median(per_step) * steps
    return total


def container_bits(bits: int) -> int:
    """The narrowest ONNX / onnxruntime MatMulNBits container: 2, 4 or 8 bits."""
    return 2 if bits <= 2 else 4 if bits <= 4 else 8


def container_bytes(plan: dict, summary: dict) -> float:
    """Paper accounting, but each searched weight at its storage container's width (3 bits take 4)."""
    from speechmpq import bitplan as bitplan_lib

    layers = {n: {**e, "bits": container_bits(e["bits"])} for n, e in plan["layers"].items()}
    stored = {**plan, "layers": layers}
    return bitplan_lib.model_bytes(stored, summary["parameters"], summary["bias_parameters"], 8)


def _test_wer(row: dict) -> float:
    words = sum(row["eval"][s]["ref_words"] for s in TEST_SPLITS)
    return sum(row["eval"][s]["wer"] * row["eval"][s]["ref_words"] for s in TEST_SPLITS) / words


def method_of(name: str) -> str:
    return "fp32" if name == "fp32" else "uniform" if name.startswith("uniform") else (
        "two-stage" if name.startswith("two-stage") else "one-stage")


def build(runs: Path) -> dict:
    rows = [r for r in (_load(runs, s.name) for s in systems()) if r is not None]
    fp32 = next((r for r in rows if r["system"] == "fp32"), None)
    if fp32 is None:
        raise SystemExit(f"{runs}: the fp32 system has not been evaluated")
    fp32_bytes = next(r["summary"]["bytes_fp32"] for r in rows if "summary" in r)
    table = []
    for row in rows:
        summary = row.get("summary", {})
        entry = {
            "system": row["system"], "method": method_of(row["system"]),
            "average_bits": summary.get("average_bits", 32.0),
            "mb_paper": (summary.get("bytes_paper", fp32_bytes)) / 1e6,
            "mb_fp32_others": (summary.get("bytes_fp32_others", fp32_bytes)) / 1e6,
            "compression_ratio": fp32_bytes / summary.get("bytes_paper", fp32_bytes),
            "compression_seconds": summary.get("compression_seconds"),
            "compression_seconds_steady": steady_seconds(runs / row["system"], summary),
            "phase_seconds": summary.get("phase_seconds"),
            "window_repairs": summary.get("window_repairs"),
            "wer": {s: row["eval"][s]["wer"] for s in SPLITS},
            "wer_groups": {s: {g: v["wer"] for g, v in row["eval"][s]["groups"].items()} for s in SPLITS},
            "cer": {s: row["eval"][s]["cer"] for s in SPLITS},
            "test_wer": _test_wer(row),
        }  # fmt: skip
        if "bitplan" in row:
            entry["mb_containers"] = container_bytes(row["bitplan"], summary) / 1e6
            entry["compression_ratio_containers"] = fp32_bytes / (entry["mb_containers"] * 1e6)
        else:
            entry["mb_containers"], entry["compression_ratio_containers"] = fp32_bytes / 1e6, 1.0
        if row["system"] != "fp32":
            entry["significance"] = _significance(fp32, row)
            entry["lossless"] = not entry["significance"]["test"]["worse"]
            entry["bits"] = {n: e["bits"] for n, e in row["bitplan"]["layers"].items()}
        else:
            entry["lossless"] = True
        table.append(entry)
    return {"rows": table, "headline": headline(table)}


def headline(table: list[dict]) -> dict:
    def lowest(method, key):
        lossless = [r for r in table if r["method"] == method and r["lossless"]]
        return min(lossless, key=lambda r: r[key]) if lossless else None

    best = {m: lowest(m, "average_bits") for m in METHOD_NAMES}
    ratio = (best["one-stage"]["compression_ratio"] / best["uniform"]["compression_ratio"]
             if best["one-stage"] and best["uniform"] else None)
    lowest_stored = {m: lowest(m, "mb_containers") for m in METHOD_NAMES}
    ratio_stored = (lowest_stored["uniform"]["mb_containers"] / lowest_stored["one-stage"]["mb_containers"]
                    if lowest_stored["one-stage"] and lowest_stored["uniform"] else None)
    seconds = {r["system"]: r["compression_seconds"] for r in table}
    steady = {r["system"]: r["compression_seconds_steady"] for r in table}

    def ratios(times):
        return {str(t): times[f"two-stage-nas-{t}"] / times[f"one-stage-{t}"] for t in TWO_STAGE_TARGETS
                if times.get(f"two-stage-nas-{t}") and times.get(f"one-stage-{t}")}

    time_ratios, steady_ratios = ratios(seconds), ratios(steady)
    return {
        "lowest_lossless_avg_bits": {m: (r["average_bits"] if r else None) for m, r in best.items()},
        "lossless_ratio_one_stage_over_uniform": ratio,
        "compression_time_two_stage_over_one_stage": (statistics.median(time_ratios.values())
                                                      if time_ratios else None),
        "lowest_lossless_system": {m: (r["system"] if r else None) for m, r in best.items()},
        "lossless_ratio_one_stage_over_uniform_stored_containers": ratio_stored,
        "compression_time_ratio_per_target": time_ratios,
        "compression_time_ratio_per_target_steady": steady_ratios,
    }


def _layer_grid(bits: dict[str, int]):
    from speechmpq.bitplan import SEARCHED_LINEAR_KINDS

    grid = {}
    for name, width in bits.items():
        match = re.search(r"layers\.(\d+)\..*?(\w+)$", name)
        if match and match.group(2) in SEARCHED_LINEAR_KINDS:
            grid[(int(match.group(1)), SEARCHED_LINEAR_KINDS.index(match.group(2)))] = width
    layers = max(i for i, _ in grid) + 1
    return [[grid.get((i, j), 0) for j in range(len(SEARCHED_LINEAR_KINDS))] for i in range(layers)]


def plots(report: dict, runs: Path, prefix: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from speechmpq.bitplan import SEARCHED_LINEAR_KINDS

    files = {}
    rows = {r["system"]: r for r in report["rows"]}
    one_stage = [f"one-stage-{t}" for t in ONE_STAGE_TARGETS if f"one-stage-{t}" in rows]
    if one_stage:
        fig, axes = plt.subplots(1, len(one_stage), figsize=(3.2 * len(one_stage) + 1, 3.6), squeeze=False,
                                 layout="constrained")
        for ax, name in zip(axes[0], one_stage, strict=True):
            grid = _layer_grid(rows[name]["bits"])
            image = ax.imshow(grid, cmap="viridis", vmin=2, vmax=8, aspect="auto")
            for i, line in enumerate(grid):
                for j, width in enumerate(line):
                    ax.text(j, i, str(width), ha="center", va="center",
                            color="white" if width < 6 else "black", fontsize=8)
            ax.set_xticks(range(len(SEARCHED_LINEAR_KINDS)), [m.replace("_dense", "").replace("_proj", "")
                                                              for m in SEARCHED_LINEAR_KINDS],
                          rotation=45, fontsize=7)
            ax.set_ylabel("layer")
            ax.set_title(f"{name}\n{rows[name]['average_bits']:.2f} bits", fontsize=9)
        fig.colorbar(image, ax=axes[0].tolist(), label="bits")
        files["bits_heatmap"] = _save(fig, prefix, "bits_heatmap")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = {"fp32": "black", "uniform": "tab:blue", "two-stage": "tab:orange", "one-stage": "tab:green"}
    for method, colour in colours.items():
        chosen = [r for r in report["rows"] if r["method"] == method]
        ax.scatter([r["mb_paper"] for r in chosen], [100 * r["test_wer"] for r in chosen], c=colour,
                   label=method, marker="*" if method == "fp32" else "o", s=60)
        for r in chosen:
            ax.annotate(r["system"].replace(method + "-", "") + ("" if r["lossless"] else " ✗"),
                        (r["mb_paper"], 100 * r["test_wer"]), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("model size, MB (searched layers at their bits, others 8-bit)")
    ax.set_ylabel("test WER % (clean + other)")
    ax.set_title("WER vs size (✗: significantly worse than FP32)")
    ax.legend(fontsize=8)
    files["wer_vs_size"] = _save(fig, prefix, "wer_vs_size")
    logs = {n: read_log(runs / n / "train_log.jsonl")
            for n in one_stage if (runs / n / "train_log.jsonl").is_file()}
    if logs:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True)
        for name, records in logs.items():
            search = [r for r in records if r.get("phase") == "search" and "hard_bits" in r]
            steps = [r["step"] for r in search]
            line = top.plot(steps, [r["expected_bits"] for r in search], label=f"{name} expected")[0]
            top.plot(steps, [r["hard_bits"] for r in search], "--", color=line.get_color(),
                     label=f"{name} argmax")
            bottom.plot(steps, [r["ctc"] + r["kl"] for r in search], color=line.get_color(), label=name)
        top.set_ylabel("average bits")
        top.legend(fontsize=6, ncol=2)
        bottom.set_ylabel("CTC + KL")
        bottom.set_xlabel("search step")
        files["one_stage_training"] = _save(fig, prefix, "one_stage_training")
    return files


def _save(fig, prefix: Path, name: str) -> str:
    path = prefix.with_name(f"{prefix.name}_{name}.png")
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    return path.name


def markdown(report: dict, meta: dict, files: dict) -> str:
    h = report["headline"]
    lines = ["# Mixed-precision quantization of the demo model: one-stage vs baselines", "",
             f"Machine: {meta['machine']}. Date: {meta['date']}. Command: `{meta['command']}`, then "
             f"`{meta['report_command']}`.", "", meta.get("notes", ""), "",
             "## Headline", "",
             "| | one-stage | two-stage | uniform |", "|---|---|---|---|",
             "| lowest lossless average bits | " + " | ".join(
                 _fmt(h["lowest_lossless_avg_bits"][m]) for m in METHOD_NAMES) + " |",
             "| that system | " + " | ".join(
                 str(h["lowest_lossless_system"][m]) for m in METHOD_NAMES) + " |",
             "", f"- Lossless compression ratio, one-stage / best uniform: "
                 f"{_fmt(h['lossless_ratio_one_stage_over_uniform'])}",
             f"- Same, with every weight stored in its ONNX/onnxruntime container (2, 4 or 8 bits; "
             f"3 bits take 4): {_fmt(h['lossless_ratio_one_stage_over_uniform_stored_containers'])}",
             f"- Compression time, two-stage (nas) / one-stage, median over targets "
             f"{', '.join(h['compression_time_ratio_per_target'])}: "
             f"{_fmt(h['compression_time_two_stage_over_one_stage'])}", "",
             "## All systems", "",
             "WER % (greedy CTC, no LM). p: MAPSSWE vs FP32 on test-clean + test-other pooled. "
             "MB: searched layers at their bits, other weights 8-bit, biases fp32 (paper); "
             "'fp32 others': other weights kept fp32. Ratio: FP32 size / paper size.", "",
             "| system | avg bits | MB | MB (fp32 others) | MB (stored 2/4/8) | ratio | dev | clean seen | "
             "clean unseen | other seen | other unseen | p | lossless | time s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        g = r["wer_groups"]
        p = r.get("significance", {}).get("test", {}).get("p_value")
        lines.append(
            f"| {r['system']} | {r['average_bits']:.2f} | {r['mb_paper']:.2f} | {r['mb_fp32_others']:.2f} | "
            f"{r['mb_containers']:.2f} | "
            f"{r['compression_ratio']:.1f}x | {100 * r['wer']['dev']:.1f} | "
            f"{_pct(g['test-clean'].get('seen'))} | {_pct(g['test-clean'].get('unseen'))} | "
            f"{_pct(g['test-other'].get('seen'))} | {_pct(g['test-other'].get('unseen'))} | "
            f"{_fmt(p, 3)} | {'yes' if r['lossless'] else 'NO'} | {_fmt(r['compression_seconds'], 0)} |")
    lines += ["", "## Plots", ""] + [f"![{k}]({v})" for k, v in files.items()] + [""]
    return "\n".join(lines)


def _fmt(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("results/mpq_demo"), help="prefix")
    parser.add_argument("--machine", required=True, help="where the runs ran, in words")
    parser.add_argument("--command", required=True, help="the command that made --runs")
    parser.add_argument("--date", default=time.strftime("%Y-%m-%d"))
    parser.add_argument("--notes", default="")
    args = parser.parse_args(argv)
    report = build(args.runs)
    meta = {"machine": args.machine, "command": args.command, "date": args.date, "notes": args.notes,
            "report_command": "python experiments/mpq_demo_report.py " + " ".join(
                f"'{a}'" if " " in a else a for a in (argv if argv is not None else sys.argv[1:]))}
    experiment = args.runs / "experiment.json"
    if experiment.is_file():
        meta["experiment"] = json.loads(experiment.read_text())
    step_time = args.runs / "step_time.json"
    if step_time.is_file():
        meta["step_time"] = json.loads(step_time.read_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    files = plots(report, args.runs, args.out)
    write_json(args.out.with_suffix(".json"), {"headline": report["headline"], "meta": meta,
                                               "plots": files, "rows": report["rows"]})
    atomic_write(args.out.with_suffix(".md"), markdown(report, meta, files))
    print(json.dumps(report["headline"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
