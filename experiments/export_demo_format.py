"""Markdown, JSON and a size-vs-WER plot for the export report (export/report.py)."""

from __future__ import annotations

import json
from pathlib import Path

from speechmpq.files import atomic_output, atomic_write


def _ops(counts: dict, top: int = 6) -> str:
    return ", ".join(f"{op} {n}" for op, n in list(counts.items())[:top])


def _verdict(row: dict) -> str:
    test = row["vs_fp32_onnx"]
    if row["system"] == "fp32":
        return "reference"
    worse = "worse" if test["mean_difference"] > 0 else "better"
    return f"p={test['p_value']:.3g} " + (f"**{worse}**" if test["significant"] else "n.s.")


def markdown(report: dict) -> str:
    meta, rows, head = report["meta"], report["rows"], report["headline"]
    lines = [
        "# ONNX export of the demo systems", "",
        f"Machine: {meta['machine']}. Date: {meta['date']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".", "",
        f"Command: `{meta['command']}`", "",
        f"WER through onnxruntime (CPU EP, graph optimisation `all`, {meta['threads']} threads) on "
        f"{' + '.join(meta['splits'])} ({meta['test_utterances']} utterances), offline (whole "
        "utterances); MAPSSWE against the FP32 ONNX at alpha 0.05. Milliseconds: median of 48 runs "
        "on one 10 s (1 s) input, 2 threads, models measured in interleaved rounds, one session open at "
        "a time; a rough cost figure (this shared VM is noisy: p90 in the JSON), the benchmark proper "
        "is `speechmpq bench`.", "",
        f"**Headline** ({head['reference_system']}, the lowest-bit lossless one-stage plan, committed as "
        f"`models/demo-mpq.onnx`): file {head['file_ratio_fp32_over_mpq']}x smaller than FP32 ONNX; "
        f"greedy transcripts identical to PyTorch on {100 * head['transcripts_identical_fraction']:.1f} % "
        f"of the test utterances (accuracy level 0, the default); WER ORT - PyTorch "
        f"{100 * head['wer_minus_pytorch']:+.2f} points; unoptimised ORT logits within "
        f"{head['max_logit_difference_relative_unoptimised']:.1e} x max|logit| of PyTorch.", "",
        "| system | weights | avg bits | MB | FP32/this | WER % | vs FP32 ONNX | ORT = PyTorch transcripts "
        "| max Δlogit (rel.) | ms / 10 s | ms / 1 s | acc. level |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        parity = r.get("parity")
        lines.append(
            f"| {r['system']} | {r['weights']} | {r['average_bits'] or '-'} | {r['bytes'] / 1e6:.2f} | "
            f"{r['file_ratio_fp32_over_this']} | {100 * r['wer']:.2f} | {_verdict(r)} | "
            + (f"{100 * parity['transcripts_identical_fraction']:.1f} % | "
               f"{parity['max_logit_difference_relative']:.1e} | " if parity else "n/a | n/a | ")
            + f"{r['latency_ms_10s']} | {r['latency_ms_1s']} | {r['accuracy_level']} |")
    fp32 = next(r for r in rows if r["system"] == "fp32")
    dynamo = next((r for r in rows if r["system"] == "fp32-dynamo"), None)
    if dynamo:
        lines += ["", "## Exporter", "",
                  "| exporter | export s | max Δlogit (rel.) | ms / 10 s | ms / 1 s | ops |",
                  "|---|---|---|---|---|---|"]
        for r in (fp32, dynamo):
            lines.append(f"| {r['exporter']} | {r['export_seconds']} | "
                         f"{r['parity']['max_logit_difference_relative']:.1e} | {r['latency_ms_10s']} | "
                         f"{r['latency_ms_1s']} | {_ops(r['ops_after_ort'], 20)} |")
        faster = "TorchScript" if fp32["latency_ms_10s"] <= dynamo["latency_ms_10s"] else "dynamo"
        lines += ["", f"Both are correct; on whole 10 s utterances {faster} runs faster here. TorchScript "
                  "is the default: it also exports in seconds rather than tens of seconds and needs no "
                  "onnxscript."]
    levels = [r for r in rows if "accuracy_level_4" in r]
    if levels:
        lines += ["", "## MatMulNBits accuracy level (session.qdq_matmulnbits_accuracy_level)", "",
                  "Level 0 (the exported default) keeps activations float32; level 4 (onnxruntime's "
                  "default for the DequantizeLinear->MatMul fusion) quantizes them to int8 inside the "
                  "kernel.", "",
                  "| system | WER % level 0 | WER % level 4 | level 4 vs FP32 ONNX | transcripts = PyTorch, "
                  "level 0 | level 4 | ms / 10 s level 0 | level 4 | ms / 1 s level 0 | level 4 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in levels:
            four = r["accuracy_level_4"]
            test = four["vs_fp32_onnx"]
            verdict = f"p={test['p_value']:.3g} " + ("**sig.**" if test["significant"] else "n.s.")
            lines.append(f"| {r['system']} | {100 * r['wer']:.2f} | {100 * four['wer']:.2f} | {verdict} | "
                         f"{100 * r['parity']['transcripts_identical_fraction']:.1f} % | "
                         f"{100 * four['transcripts_identical_to_pytorch']:.1f} % | {r['latency_ms_10s']} | "
                         f"{four['latency_ms_10s']} | {r['latency_ms_1s']} | {four['latency_ms_1s']} |")
    sized = [r for r in rows if r.get("size")]
    if sized:
        lines += ["", "## File size vs the plan", "",
                  "computed = planned weights at their bits + every other parameter in fp32 (+ int8 "
                  "others where chosen); overhead = scales (one per output channel per 256 rows, so ORT "
                  "fuses), graph and metadata.", "",
                  "| system | file bytes | computed | container padding (3-bit in INT4) | scales | overhead "
                  "| overhead % |", "|---|---|---|---|---|---|---|"]
        for r in sized:
            s = r["size"]
            lines.append(f"| {r['system']} | {s['file_bytes']} | {s['computed_bytes']} | "
                         f"{s['container_padding_bytes']} | {s['scale_bytes']} | {s['overhead_bytes']} | "
                         f"{100 * s['overhead_fraction']:.1f} |")
    lines += ["", "## Op types after ORT optimisation (level `extended`)", ""]
    lines += [f"- {r['system']}: {_ops(r['ops_after_ort'], 30)}" for r in rows]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    figure, axis = plt.subplots(figsize=(9, 5.5))
    rows = sorted((r for r in report["rows"] if r["system"] != "fp32-dynamo"), key=lambda r: r["bytes"])
    for index, r in enumerate(rows):
        colour = ("tab:red" if r["weights"] == "mpq" else "tab:gray" if r["weights"].startswith("ort")
                  else "tab:blue")
        axis.scatter(r["bytes"] / 1e6, 100 * r["wer"], color=colour)
        axis.annotate(r["system"], (r["bytes"] / 1e6, 100 * r["wer"]), fontsize=7,
                      xytext=(4, 9 if index % 2 else -11), textcoords="offset points")
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(FixedLocator([2, 3, 4, 5, 7, 10, 15, 20]))
    axis.xaxis.set_minor_locator(NullLocator())
    axis.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
    axis.set_xlabel("ONNX file size (MB, log scale)")
    axis.set_ylabel("WER % through onnxruntime (test-clean + test-other)")
    axis.set_title("Exported demo models: size vs WER (red: mixed precision, grey: ORT peers)")
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)


def write_report(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(report, out.with_name(out.name + "_size_wer.png"))
    report["plots"] = [out.name + "_size_wer.png"]
    atomic_write(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write(out.with_suffix(".md"), markdown(report) + f"\n![size vs WER]({out.name}_size_wer.png)\n")
