"""Aggregate benchmark children into figures, ratios and a headline; write JSON, Markdown and plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from speechmpq.files import atomic_output, atomic_write
from speechmpq.scoring import score_pairs
from speechmpq.significance import mapsswe


def _bytes(path: Path) -> int:
    """An .onnx file with its external data, or a model directory's weight files."""
    if path.is_file():
        return path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob(path.name + ".*.data"))
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))


def _spread(values: list[float]) -> dict:
    return {"median": float(np.median(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def _row(label: str, path: Path, results: list[dict]) -> dict:
    chunks = np.array([s for r in results for s in r["chunk_seconds"]]) * 1000
    per_rep = [float(np.median(r["chunk_seconds"]) * 1000) for r in results]
    eos = np.array([s for r in results for s in r["end_of_speech_seconds"]]) * 1000
    first = results[0]
    return {
        "label": label, "path": str(path), "weights": first["weights"],
        "accuracy_level": first["accuracy_level"], "file_bytes": _bytes(path),
        "frontend_cache": bool(first.get("frontend_cache", False)),
        "decoder": first.get("decoder", "greedy"), "kernels": first.get("kernels"),
        "chunk_ms": first["chunk_ms"], "left_ms": first["left_ms"], "right_ms": first["right_ms"],
        "load_seconds": float(np.median([r["load_seconds"] for r in results])),
        "chunk_latency_ms": {"p50": float(np.percentile(chunks, 50)), "p95": float(np.percentile(chunks, 95)),
                             "p99": float(np.percentile(chunks, 99)), "samples": int(chunks.size)},
        "chunk_latency_ms_per_repetition": per_rep,
        "rtf": float(np.median([r["rtf"] for r in results])),
        "end_of_speech_ms": {"p50": float(np.percentile(eos, 50)), "p95": float(np.percentile(eos, 95))},
        "rss_after_load_mib": float(np.median([r["memory_after_load"]["rss_mib"] for r in results])),
        "rss_model_mib": float(np.median([r["memory_after_load"]["rss_mib"]
                                          - r["memory_before_load"]["rss_mib"] for r in results])),
        "peak_rss_mib": float(np.median([r["memory_end"]["hwm_mib"] for r in results])),
        "peak_rss_mib_per_repetition": [r["memory_end"]["hwm_mib"] for r in results],
        "ru_maxrss_mib": float(np.median([r["memory_end"]["ru_maxrss_mib"] for r in results])),
        "chunk_latency_samples_ms": [round(float(x), 3) for x in chunks],
    }


def _pick(rows: dict, label: str | None, weights: str) -> str | None:
    if label is not None:
        if label not in rows:
            raise ValueError(f"no model labelled {label!r} (have {sorted(rows)})")
        return label
    return next((name for name, row in rows.items() if row["weights"] == weights), None)


def _ratios(rows: dict, numerator: str | None, denominator: str | None, key: str) -> dict | None:
    if numerator is None or denominator is None:
        return None
    a, b = rows[numerator][key], rows[denominator][key]
    return _spread([x / y for x, y in zip(a, b, strict=True)])


def summarize(config, models: dict, runs: dict, wer: dict, machine: dict, stream_files: int,
              eos_files: int) -> dict:
    tables = {}
    for threads in config.threads:
        rows = {label: _row(label, models[label], runs[label][threads]) for label in models}
        fp32 = _pick(rows, config.fp32, "fp32")
        for row in rows.values():
            row["latency_ratio_over_fp32"] = _ratios(rows, row["label"], fp32,
                                                     "chunk_latency_ms_per_repetition")
            row["rss_ratio_over_fp32"] = _ratios(rows, row["label"], fp32, "peak_rss_mib_per_repetition")
        tables[str(threads)] = rows
    wer_rows = {}
    for label, result in wer.items():
        refs, ids = result["references"], result["ids"]
        streaming = score_pairs(ids, refs, result["streaming"])["wer"]
        offline = score_pairs(ids, refs, result["offline"])["wer"]
        test = mapsswe(refs, result["offline"], result["streaming"])
        wer_rows[label] = {"streaming_wer": streaming, "offline_wer": offline,
                           "streaming_minus_offline_wer": streaming - offline,
                           "streaming_vs_offline_p": test["p_value"], "utterances": len(ids)}
    key = str(2 if 2 in config.threads else max(config.threads))
    rows = tables[key]
    fp32, mpq = _pick(rows, config.fp32, "fp32"), _pick(rows, config.mpq, "mpq")
    int8 = _pick(rows, config.int8, "ort-int8-dynamic")
    for label, entry in wer_rows.items():
        # the FP32 reference decoded the same way (greedy against greedy, LM against LM)
        decoder = wer[label].get("decoder", "greedy")
        same = [other for other in ([fp32] + list(wer)) if other in wer
                and wer[other].get("decoder", "greedy") == decoder
                and (other == fp32 or wer[other].get("weights") == "fp32")]
        reference_label = same[0] if same else fp32
        if reference_label in wer and label != reference_label:
            entry["fp32_reference"] = reference_label
            reference = wer[reference_label]
            entry["offline_vs_fp32_p"] = mapsswe(reference["references"], reference["offline"],
                                                 wer[label]["offline"])["p_value"]
            entry["streaming_vs_fp32_p"] = mapsswe(reference["references"], reference["streaming"],
                                                   wer[label]["streaming"])["p_value"]
    fp32_cached = _pick(rows, config.fp32_cached, "-") if getattr(config, "fp32_cached", None) else None
    int8_cached = _pick(rows, config.int8_cached, "-") if getattr(config, "int8_cached", None) else None
    headline = {"threads": int(key), "fp32": fp32, "mpq": mpq, "ort_int8": int8, "fp32_cached": fp32_cached,
                "ort_int8_cached": int8_cached}
    for name, numerator, denominator, field in [
            ("latency_ratio_mpq_over_fp32", mpq, fp32, "chunk_latency_ms_per_repetition"),
            ("latency_ratio_mpq_over_ort_int8", mpq, int8, "chunk_latency_ms_per_repetition"),
            ("rss_ratio_mpq_over_fp32", mpq, fp32, "peak_rss_mib_per_repetition"),
            ("latency_ratio_mpq_over_fp32_cached", mpq, fp32_cached, "chunk_latency_ms_per_repetition"),
            ("latency_ratio_mpq_over_ort_int8_cached", mpq, int8_cached, "chunk_latency_ms_per_repetition"),
            ("rss_ratio_mpq_over_fp32_cached", mpq, fp32_cached, "peak_rss_mib_per_repetition")]:
        ratio = _ratios(rows, numerator, denominator, field)
        headline[name] = ratio["median"] if ratio else None
        headline[name + "_spread"] = ratio
    if mpq in wer_rows:
        headline["streaming_minus_offline_wer"] = wer_rows[mpq]["streaming_minus_offline_wer"]
    if fp32 in wer_rows:
        headline["fp32_streaming_minus_offline_wer"] = wer_rows[fp32]["streaming_minus_offline_wer"]
    return {"headline": headline, "title": config.title, "machine": machine,
            "settings": {"threads": config.threads, "repetitions": config.repetitions,
                         "stream_seconds": config.stream_seconds, "stream_files": stream_files,
                         "end_of_speech_utterances": eos_files, "data": config.data,
                         "chunk_ms": config.chunk_ms, "left_ms": config.left_ms, "right_ms": config.right_ms},
            "latency": tables, "wer": wer_rows}


def _fmt_ratio(ratio: dict | None) -> str:
    return "—" if ratio is None else f"{ratio['median']:.2f} [{ratio['min']:.2f}, {ratio['max']:.2f}]"


def bench_markdown(report: dict, command: str) -> str:
    """The report as Markdown: setup, headline ratios, one latency table per thread count, WER and
    the onnxruntime profile (the last two where the report has them)."""
    machine, settings, head = report["machine"], report["settings"], report["headline"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    title = report["title"] or ", ".join(report["latency"][str(settings["threads"][0])])
    lines = [f"# Benchmark: {title}", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['system']}; Python "
             f"{machine['python']}, {versions}; {machine['date']}.", "",
             f"Command: `{command}`", "",
             f"Each model in a fresh process, {settings['repetitions']} interleaved repetitions per thread "
             f"count; a latency sample is one `decode` call that decodes one chunk of a "
             f"{settings['stream_seconds']:.0f} s stream ({settings['stream_files']} utterances back to "
             "back); end of speech = `input_finished` + final `decode` on "
             f"{settings['end_of_speech_utterances']} utterances. Peak RSS is the child's VmHWM "
             "(ru_maxrss beside it as a cross-check). Ratios are "
             "per repetition against the FP32 row: median [min, max].", "",
             "## Headline (" + f"{head['threads']} threads, median)", ""]
    lines += _headline_lines(head)
    for threads, rows in report["latency"].items():
        lines += _latency_lines(threads, rows)
    lines += _kernel_lines(next(iter(report["latency"].values()), {}))
    if report["wer"]:
        lines += _wer_lines(report["wer"])
    if report.get("profile"):
        lines += _profile_lines(report["profile"])
    return "\n".join(lines)


def _headline_lines(head: dict) -> list[str]:
    lines = [f"Against the peers as they run today (`{head['fp32']}`, `{head.get('ort_int8')}`); MPQ row "
             f"`{head['mpq']}`:", ""]
    for name in ("latency_ratio_mpq_over_fp32", "latency_ratio_mpq_over_ort_int8", "rss_ratio_mpq_over_fp32"):
        lines.append(f"- `{name}` = {_fmt_ratio(head.get(name + '_spread'))}")
    if head.get("fp32_cached") or head.get("ort_int8_cached"):
        lines += ["", f"Against the peers with the front-end cache too (`{head.get('fp32_cached')}`, "
                  f"`{head.get('ort_int8_cached')}`):", ""]
        for name in ("latency_ratio_mpq_over_fp32_cached", "latency_ratio_mpq_over_ort_int8_cached",
                     "rss_ratio_mpq_over_fp32_cached"):
            lines.append(f"- `{name}` = {_fmt_ratio(head.get(name + '_spread'))}")
    if "streaming_minus_offline_wer" in head:
        lines.append(f"- `streaming_minus_offline_wer` = {100 * head['streaming_minus_offline_wer']:+.2f} "
                     f"points (MPQ model `{head['mpq']}`)")
    lines.append("")
    return lines


def _latency_lines(threads: str, rows: dict) -> list[str]:
    lines = [
        f"## {threads} thread{'s' * (threads != '1')}",
        "",
        "| model | weights | acc. level | front-end cache | decoder | file MB | load s | "
        "chunk ms p50 / p95 / p99 | RTF | "
        "end of speech ms p50 | RSS after load MiB | peak RSS MiB (ru_maxrss) | latency / FP32 | "
        "peak RSS / FP32 |",
        "|---|---|---:|---|---|---:|---:|---|---:|---:|---:|---|---|---|",
    ]
    for row in rows.values():
        c = row["chunk_latency_ms"]
        level = "—" if row["accuracy_level"] is None else row["accuracy_level"]
        lines.append(
            f"| {row['label']} | {row['weights']} | {level} | "
            f"{'on' if row.get('frontend_cache') else 'off'} | {row.get('decoder', 'greedy')} | "
            f"{row['file_bytes'] / 1e6:.2f} | "
            f"{row['load_seconds']:.2f} | {c['p50']:.1f} / {c['p95']:.1f} / {c['p99']:.1f} | "
            f"{row['rtf']:.3f} | {row['end_of_speech_ms']['p50']:.1f} | "
            f"{row['rss_after_load_mib']:.0f} | "
            f"{row['peak_rss_mib']:.0f} ({row['ru_maxrss_mib']:.0f}) | "
            f"{_fmt_ratio(row['latency_ratio_over_fp32'])} | {_fmt_ratio(row['rss_ratio_over_fp32'])} |")
    lines.append("")
    return lines


def _kernel_lines(rows: dict) -> list[str]:
    """How each row's quantized layers ran on the benchmark machine (chosen when the model loaded)."""
    chosen = [(row["label"], row.get("kernels")) for row in rows.values() if row.get("kernels")]
    if not chosen:
        return []
    return ["## Kernels chosen at load", ""] + [f"- `{label}`: {text}" for label, text in chosen] + [""]


def _wer_lines(wer: dict) -> list[str]:
    lines = ["## WER (each row's decoder)", "",
             "| model | utterances | streaming WER % | offline WER % | "
             "streaming − offline | MAPSSWE p (streaming vs offline) | MAPSSWE p (offline vs FP32) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, row in wer.items():
        p_fp32 = row.get("offline_vs_fp32_p")
        p_fp32 = "—" if p_fp32 is None else f"{p_fp32:.3f}"
        lines.append(f"| {label} | {row['utterances']} | {100 * row['streaming_wer']:.2f} | "
                     f"{100 * row['offline_wer']:.2f} | "
                     f"{100 * row['streaming_minus_offline_wer']:+.2f} | "
                     f"{row['streaming_vs_offline_p']:.3f} | {p_fp32} |")
    lines.append("")
    return lines


def _profile_lines(profile: dict) -> list[str]:
    ops = []
    for result in profile.values():
        ops += [op for op in list(result["op_ms"])[:6] if op not in ops]
    lines = [
        "## onnxruntime profile (ms per model call of a steady-state stream, one chunk's window "
        "through the row's front-end cache, by operator type after fusion)",
        "",
        "| model | window ms | cache | run | " + " | ".join(ops) + " |",
        "|---|---:|---|---:|" + "---:|" * len(ops),
    ]
    for label, result in profile.items():
        cells = " | ".join(f"{result['op_ms'].get(op, 0.0):.1f}" for op in ops)
        cache = "on" if result.get("frontend_cache") else "off"
        lines.append(f"| {label} | {result['window_ms']} | {cache} | {result['run_ms']:.1f} | {cells} |")
    lines.append("")
    return lines


def plots(report: dict, prefix: Path) -> list[Path]:
    """Latency distribution, size/RSS bars and WER vs bytes; nothing if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    rows = report["latency"][str(report["headline"]["threads"])]
    labels = list(rows)
    written = []
    figure, axis = plt.subplots(figsize=(8, 0.5 + 0.45 * len(labels)))
    axis.boxplot([rows[k]["chunk_latency_samples_ms"] for k in labels], orientation="horizontal",
                 showfliers=True, flierprops={"markersize": 2})
    axis.set_yticks(range(1, len(labels) + 1), labels)
    axis.set_xlabel(f"per-chunk latency, ms ({report['headline']['threads']} threads)")
    axis.invert_yaxis()
    written.append(_save(figure, prefix, "latency"))
    figure, axis = plt.subplots(figsize=(8, 0.5 + 0.45 * len(labels)))
    y = np.arange(len(labels))
    axis.barh(y - 0.2, [rows[k]["file_bytes"] / 2**20 for k in labels], 0.4, label="file MiB")
    axis.barh(y + 0.2, [rows[k]["peak_rss_mib"] for k in labels], 0.4, label="peak RSS MiB")
    axis.set_yticks(y, labels)
    axis.invert_yaxis()
    axis.legend()
    written.append(_save(figure, prefix, "memory"))
    if report["wer"]:
        figure, axis = plt.subplots(figsize=(6, 4))
        for label, row in report["wer"].items():
            size = rows[label]["file_bytes"] / 1e6
            axis.scatter(size, 100 * row["offline_wer"], marker="o", color="C0")
            axis.scatter(size, 100 * row["streaming_wer"], marker="x", color="C1")
            axis.annotate(label, (size, 100 * row["offline_wer"]), fontsize=7, xytext=(3, 3),
                          textcoords="offset points")
        axis.set_xscale("log")
        axis.set_xlabel("file size, MB (log)")
        axis.set_ylabel("WER %  (o offline, x streaming)")
        written.append(_save(figure, prefix, "wer_bytes"))
    return written


def _save(figure, prefix: Path, name: str) -> Path:
    path = prefix.with_name(f"{prefix.name}_{name}.png")
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def write_report(report: dict, prefix: Path, command: str) -> list[Path]:
    report = {**report, "command": command}
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = prefix.with_suffix(".json"), prefix.with_suffix(".md")
    atomic_write(json_path, json.dumps(report, indent=1) + "\n")
    text = bench_markdown(report, command)
    written = plots(report, prefix)
    if written:
        text += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in written) + "\n"
    atomic_write(md_path, text)
    return [json_path, md_path, *written]
