"""The frontier's table and plots from a ``speechmpq frontier`` run folder (verdicts_dev.json and,
for the finalists, verdicts_test.json): OUT.json, OUT.md, OUT.png (stored bits per weight against
WER change, per corpus and decoder) and OUT_bits.png (the per-layer bits of every trained plan)."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

from speechmpq.files import atomic_output, atomic_write
from speechmpq.jobs.frontier import CORPORA, DECODERS
from speechmpq.jobs.verdicts import lossless_everywhere

PEER_FAMILIES = ("ort", "rtn", "uniform")  # what one-stage must beat (hand mixes are "ort" rows)
_LAYER = re.compile(r"encoder\.layers\.(\d+)\.(.+)$")


def lossless(record: dict) -> bool:
    return lossless_everywhere(record["verdicts"])


def shown_family(record: dict) -> str:
    """The family a row is counted in: a trained plan that equals round to nearest counts as rtn."""
    if record.get("stats", {}).get("equals_rtn"):
        return "rtn"
    if record["family"] == "ort" and "mix" in record["settings"]:
        return "hand mix"
    return record["family"]


def shown_name(record: dict) -> str:
    if record.get("stats", {}).get("equals_rtn"):
        return f"{record['name']} (= RTN of its plan)"
    return record["name"]


def headline(systems: dict) -> dict:
    """Lowest stored bits lossless on every verdict, per shown family, and one-stage's ratio to
    the best peer (ORT, hand mix, our RTN, uniform QAT)."""
    best: dict = {}
    for record in systems.values():
        if record["family"] == "fp32" or not lossless(record):
            continue
        family = shown_family(record)
        if family not in best or record["stored_bits_per_weight"] < best[family]["stored_bits_per_weight"]:
            best[family] = {"system": record["name"],
                            "stored_bits_per_weight": record["stored_bits_per_weight"]}
    peers = [v for k, v in best.items() if k in (*PEER_FAMILIES, "hand mix")]
    result = {"lowest_lossless": best, "paper_setting": paper_setting(systems)}
    if peers and "one-stage" in best:
        peer = min(peers, key=lambda v: v["stored_bits_per_weight"])
        result["best_peer"] = peer
        result["one_stage_over_best_peer"] = (peer["stored_bits_per_weight"]
                                              / best["one-stage"]["stored_bits_per_weight"])
    return result


def paper_setting(systems: dict) -> dict:
    """The paper's comparison in its own setting (per-tensor steps, code bits): each trained family's
    lowest lossless average bits and compression time, and one-stage's lossless compression ratio
    (32 / bits) over uniform's and two-stage's."""
    best: dict = {}
    for record in systems.values():
        settings = record.get("settings", {})
        if record["family"] not in ("uniform", "two-stage", "one-stage") or not lossless(record):
            continue
        if settings.get("granularity") != "per-tensor":
            continue
        family = record["family"]
        if family not in best or record["average_bits"] < best[family]["average_bits"]:
            best[family] = {"system": record["name"], "average_bits": record["average_bits"],
                            "compression_seconds": record["compression_seconds"]}
    ratios = {}
    if "one-stage" in best:
        for other in ("uniform", "two-stage"):
            if other in best:
                ratios[f"one_stage_over_{other.replace('-', '_')}"] = (best[other]["average_bits"]
                                                                       / best["one-stage"]["average_bits"])
    return {"lowest_lossless": best, "ratios": ratios}


def _cell(verdict: dict) -> str:
    delta = 100 * (verdict["wer_candidate"] - verdict["wer_reference"])
    p = "< 0.001" if verdict["p_value"] < 0.001 else f"{verdict['p_value']:.3f}"
    mark = "" if verdict["lossless"] else " **NO**"
    return f"{delta:+.2f} (p {p}){mark}"


def _stats_cell(record: dict) -> str:
    stats = record.get("stats")
    if not stats:
        return "—"
    bits = ", ".join(f"{b}b {100 * s:.0f} %" for b, s in stats["bit_histogram"].items())
    return (f"{bits}; steps moved {100 * stats['step_movement']['median']:.1f} % (max "
            f"{100 * stats['step_movement']['max']:.0f} %); "
            f"codes ≠ RTN {100 * stats['codes_differ_from_rtn']:.1f} %")


def corpora(role: dict) -> list[str]:
    """The corpora a verdicts file judged on (files from before real-speech runs: the two synthetic)."""
    return role.get("corpora", list(CORPORA))


def table(systems: dict, judged_on: list[str]) -> list[str]:
    heads = " | ".join(f"{c} {d}" for c in judged_on for d in DECODERS)
    lines = [f"| system | family | stored bits/weight | code bits (paper) | compression s | {heads} | "
             "lossless | search seen |",
             "|---|---|---:|---:|---:|" + "---|" * (len(judged_on) * len(DECODERS)) + "---|---|"]
    rows = sorted((r for r in systems.values() if r["family"] != "fp32"),
                  key=lambda r: r["stored_bits_per_weight"])
    for r in rows:
        cells = " | ".join(_cell(r["verdicts"][c][d]) for c in judged_on for d in DECODERS)
        lines.append(f"| {shown_name(r)} | {shown_family(r)} | {r['stored_bits_per_weight']:.3f} | "
                     f"{r['average_bits']:.2f} | {r['compression_seconds']:.0f} | {cells} | "
                     f"{'yes' if lossless(r) else '**NO**'} | {_stats_cell(r)} |")
    return lines


def _fp32_line(role: dict) -> str:
    fp32 = role["systems"]["fp32"]["results"]
    return "FP32 WER on these sets: " + ", ".join(
        f"{c} {d} {100 * fp32[c][d]['wer']:.2f} %" for c in corpora(role) for d in DECODERS) + "."


def markdown(report: dict) -> str:
    dev = report["dev"]
    lines = ["# The mixed-precision frontier: stored bits per weight against WER change vs FP32", "",
             f"Command: `{report['command']}`; report: `{report['report_command']}`", "",
             f"Machine: {report['machine']}; {report['date']}.", "",
             "Stored bits per weight: codes plus scales and zero points over the searched matrices "
             "(attention q/k/v/out, FFN in/out of every encoder layer), as the .onnx stores them "
             "(onnxruntime rows read from the graph: asymmetric, fp32 scales + uint8 zero points, HQQ fp32 "
             "zero points; our rows: symmetric, fp32 scales, codes in their ONNX container). 'code bits' "
             "is the paper's accounting (codes alone). Every file runs with float activations. Each cell: "
             "WER change in points vs FP32 decoded the same way (MAPSSWE two-sided p, alpha 0.05, so "
             "'worse' is tested at one-sided 0.025); lossless = not significantly worse on every "
             "verdict.", "",
             "## Dev sets (these choose)", "", _fp32_line(dev), "", *table(dev["systems"], corpora(dev)), ""]
    top = report["headline_dev"]
    lines += ["Lowest stored bits lossless on every dev verdict, per family: " + "; ".join(
        f"{family} {v['stored_bits_per_weight']:.3f} ({v['system']})" for family, v in
        sorted(top["lowest_lossless"].items(), key=lambda kv: kv[1]["stored_bits_per_weight"])) + "."]
    if "one_stage_over_best_peer" in top:
        lines.append(f"One-stage mixed precision's lossless point over the best peer's "
                     f"({top['best_peer']['system']}): {top['one_stage_over_best_peer']:.2f}x lower "
                     "stored bits.")
    else:
        as_rtn = [r["name"] for r in report["dev"]["systems"].values()
                  if r["family"] == "one-stage" and r.get("stats", {}).get("equals_rtn") and lossless(r)]
        lines.append("No one-stage plan that differs from round to nearest is lossless on every dev "
                     "verdict" + (f" (lossless but equal to RTN of its plan, so counted as RTN: "
                                   f"{', '.join(as_rtn)})" if as_rtn else "") + ": no ratio to report.")
    paper = top["paper_setting"]
    if paper["lowest_lossless"]:
        lines += ["", "The paper's own setting (per-tensor steps, code bits): lowest lossless " + "; ".join(
            f"{family} {v['average_bits']:.2f} bits (`{v['system']}`, compressed in "
            f"{v['compression_seconds']:.0f} s)" for family, v in paper["lowest_lossless"].items()) + ". "
            + (" ".join(f"Lossless compression ratio "
                        f"{k.replace('_', ' ').replace('one stage', 'one-stage')}: {r:.2f}x."
                        for k, r in paper["ratios"].items()) or
               "No ratio: one-stage or both baselines have no lossless point in this setting.")]
    if report.get("test"):
        test = report["test"]
        lines += ["", "## Test sets (finalists only, decoded once for this verdict)", "",
                  f"Settings chosen on: {test['chosen_on']}.", "", _fp32_line(test), "",
                  *table(test["systems"], corpora(test)), "",
                  "Lowest stored bits lossless on every test verdict, per family: " + "; ".join(
                      f"{family} {v['stored_bits_per_weight']:.3f} ({v['system']})" for family, v in
                      sorted(report["headline_test"]["lowest_lossless"].items(),
                             key=lambda kv: kv[1]["stored_bits_per_weight"])) + "."]
    lines += ["", "![frontier](" + Path(report["png"]).name + ")", "",
              "![per-layer bits](" + Path(report["bits_png"]).name + ")"]
    return "\n".join(lines) + "\n"


def write_report(runs: Path, out: Path, command: str, machine: str | None = None) -> list[Path]:
    from speechmpq.machine import machine_facts

    dev = json.loads((runs / "verdicts_dev.json").read_text())
    test_path = runs / "verdicts_test.json"
    test = json.loads(test_path.read_text()) if test_path.exists() else None
    if machine is None:
        facts = machine_facts()
        machine = (f"{facts['cpu']}, {facts['cores']} cores, onnxruntime "
                   f"{facts['versions'].get('onnxruntime')}")
    out = Path(out)
    report = {"command": command, "report_command": f"speechmpq frontier-report --runs {runs} --out {out}",
              "machine": machine, "date": datetime.date.today().isoformat(), "dev": dev, "test": test,
              "headline_dev": headline(dev["systems"]), "png": f"{out}.png", "bits_png": f"{out}_bits.png"}
    if test:
        report["headline_test"] = headline(test["systems"])
    plot_frontier(dev["systems"], Path(report["png"]), corpora(dev))
    plot_bits(dev["systems"], Path(report["bits_png"]))
    json_path, md_path = Path(f"{out}.json"), Path(f"{out}.md")
    atomic_write(json_path, json.dumps(report, indent=1) + "\n")
    atomic_write(md_path, markdown(report))
    return [md_path, json_path, Path(report["png"]), Path(report["bits_png"])]


_STYLE = {"ort": ("o", "tab:blue"), "hand mix": ("D", "tab:purple"), "rtn": ("s", "tab:gray"),
          "uniform": ("^", "tab:green"), "two-stage": ("v", "tab:orange"), "one-stage": ("*", "tab:red")}


def plot_frontier(systems: dict, path: Path, judged_on: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(judged_on), len(DECODERS), figsize=(12, 1 + 3.5 * len(judged_on)),
                                sharex=True, squeeze=False)
    rows = [r for r in systems.values() if r["family"] != "fp32"]
    for (corpus, decoder), axis in zip([(c, d) for c in judged_on for d in DECODERS], axes.flat, strict=True):
        for family, (marker, color) in _STYLE.items():
            chosen = [r for r in rows if shown_family(r) == family]
            for filled in (True, False):
                points = [r for r in chosen if r["verdicts"][corpus][decoder]["lossless"] == filled]
                if not points:
                    continue
                x = [r["stored_bits_per_weight"] for r in points]
                y = [100 * (r["verdicts"][corpus][decoder]["wer_candidate"]
                            - r["verdicts"][corpus][decoder]["wer_reference"]) for r in points]
                axis.scatter(x, y, marker=marker, s=60, color=color if filled else "none",
                             edgecolors=color, label=f"{family}{'' if filled else ' (not lossless)'}")
        axis.axhline(0, color="black", linewidth=0.6)
        axis.set_title(f"{corpus}, {decoder}")
        axis.set_ylabel("WER change vs FP32 (points)")
        axis.set_xlabel("stored bits per weight (codes + scales + zero points)")
        axis.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    figure.legend(unique.values(), unique.keys(), loc="lower center", ncol=4, fontsize=8)
    figure.suptitle("Filled: lossless on that verdict (not significantly worse, MAPSSWE one-sided alpha "
                    "0.025); hollow: significantly worse")
    figure.tight_layout(rect=(0, 0.08, 1, 0.97))
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)


def plot_bits(systems: dict, path: Path) -> None:
    """One row of cells per trained plan: the bits of each searched matrix, layer by layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plans = [r for r in systems.values() if r["family"] in ("uniform", "two-stage", "one-stage")]
    figure, axes = plt.subplots(max(len(plans), 1), 1, figsize=(10, 1.2 + 1.3 * max(len(plans), 1)),
                                squeeze=False)
    for axis, record in zip(axes.flat, plans, strict=False):
        cells: dict = {}
        for name, bits in record["layer_bits"].items():
            match = _LAYER.search(name)
            if match:
                cells[(match.group(2), int(match.group(1)))] = bits
        kinds = sorted({k for k, _ in cells})
        depth = max(i for _, i in cells) + 1
        grid = np.array([[cells.get((k, i), np.nan) for i in range(depth)] for k in kinds])
        axis.imshow(grid, cmap="viridis", vmin=2, vmax=8, aspect="auto")
        for (row, column), bits in np.ndenumerate(grid):
            axis.text(column, row, f"{bits:.0f}", ha="center", va="center", fontsize=7, color="white")
        axis.set_yticks(range(len(kinds)), [k.split(".")[-1] for k in kinds], fontsize=7)
        axis.set_xticks(range(depth), [f"layer {i}" for i in range(depth)], fontsize=7)
        axis.set_title(f"{shown_name(record)}: {record['stored_bits_per_weight']:.2f} stored bits/weight",
                       fontsize=9)
    if not plans:
        axes.flat[0].set_axis_off()
        axes.flat[0].text(0.5, 0.5, "no trained plans", ha="center")
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)
