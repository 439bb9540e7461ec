"""The pipeline's report: the results table (pipeline.json "table"), its markdown and the headline."""

from __future__ import annotations

ALPHA = 0.05  # MAPSSWE significance level of the lossless verdict
# bench label -> (exported file, front-end cache, table name); FP32 first (the reference)
ROWS = {
    "fp32": ("fp32", "off", "FP32"),
    "fp32-cache": ("fp32", "on", "FP32 + cache"),
    "ort-int8-dynamic": ("int8", "off", "ORT int8-dynamic"),
    "ort-int8-dynamic-cache": ("int8", "on", "ORT int8-dynamic + cache"),
    "ort-int4-rtn": ("int4", "off", "ORT int4-RTN"),
    "mpq-kernelmap": ("mpq", "off", "MPQ, kernels at load"),
    "mpq": ("mpq", "on", "MPQ, kernels at load + cache"),
}
# the rows decoded with the LM too (when there is one): the same files, cache on
LM_ROWS = {
    "fp32-lm": ("fp32", "on", "FP32 + cache, LM decoder"),
    "mpq-lm": ("mpq", "on", "MPQ, kernels at load + cache, LM decoder"),
}
# the rows of a model whose front end has no cache (WhisperForCTC: its log-mel is padded per window)
UNCACHED_ROWS = {
    "fp32": ("fp32", "off", "FP32"),
    "ort-int8-dynamic": ("int8", "off", "ORT int8-dynamic"),
    "ort-int4-rtn": ("int4", "off", "ORT int4-RTN"),
    "mpq": ("mpq", "off", "MPQ, kernels at load"),
}
UNCACHED_LM_ROWS = {
    "fp32-lm": ("fp32", "off", "FP32, LM decoder"),
    "mpq-lm": ("mpq", "off", "MPQ, kernels at load, LM decoder"),
}


def bench_rows(cache: bool, lm: bool) -> dict:
    """The pipeline's rows: label -> (exported file, front-end cache, table name)."""
    if cache:
        return {**ROWS, **(LM_ROWS if lm else {})}
    return {**UNCACHED_ROWS, **(UNCACHED_LM_ROWS if lm else {})}


def machine_line() -> str:
    """The machine in one line: CPU, cores, OS, Python and library versions."""
    from speechmpq.machine import machine_facts

    facts = machine_facts()
    return (f"{facts['cpu']}, {facts['cores']} cores, {facts['system']}, Python {facts['python']}, "
            + ", ".join(f"{name} {version}" for name, version in facts["versions"].items() if version))


def results_table(bench: dict, quantized: dict, every: dict | None = None) -> list[dict]:
    """The table's rows; ``every``: the run's rows (``bench_rows``; default: those with the cache)."""
    threads = str(bench["headline"]["threads"])
    rows = []
    every = every or {**ROWS, **LM_ROWS}
    for label in [label for label in every if label in bench["latency"][threads]]:
        latency, wer = bench["latency"][threads][label], bench["wer"][label]
        _, cache, name = every[label]
        row = {"system": name, "label": label, "frontend_cache": cache, "wer": 100 * wer["streaming_wer"],
               "offline_wer": 100 * wer["offline_wer"], "file_mb": latency["file_bytes"] / 1e6,
               "chunk_ms_p50": latency["chunk_latency_ms"]["p50"], "rtf": latency["rtf"],
               "peak_rss_mib": latency["peak_rss_mib"], "average_bits": None, "p": None, "lossless": True}
        if label.startswith("fp32"):
            row["average_bits"] = 32.0
        elif label.startswith("mpq"):
            row["average_bits"] = quantized["average_bits"]
        reference = wer.get("fp32_reference") or ("fp32" if not label.endswith("-lm") else None)
        if label != "fp32" and reference is not None:  # against FP32 decoded the same way
            fp32 = next(r for r in rows if r["label"] == reference)
            row["reference"] = reference
            row["p"] = wer.get("streaming_vs_fp32_p")
            row["lossless"] = row["wer"] <= fp32["wer"] or (row["p"] is not None and row["p"] >= ALPHA)
            row["size_ratio"] = fp32["file_mb"] / row["file_mb"]
            row["latency_ratio"] = row["chunk_ms_p50"] / fp32["chunk_ms_p50"]
            row["memory_ratio"] = row["peak_rss_mib"] / fp32["peak_rss_mib"]
        rows.append(row)
    return rows


def _with_ratio(text: str, row: dict, key: str, template: str) -> str:
    return text + (template.format(row[key]) if key in row else "")


def format_table(table: list[dict]) -> str:
    lines = ["| system | WER % (streaming) | vs FP32 | lossless (not sig. worse, one-sided α=0.025) | "
             "avg bits | file MB | chunk p50 ms (vs FP32) | RTF | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    by_label = {row["label"]: row for row in table}
    for row in table:
        versus, verdict = "—", "reference"
        if row.get("reference") in by_label:
            verdict = "yes" if row["lossless"] else "NO"
            if row["p"] is not None:
                versus = f"{row['wer'] - by_label[row['reference']]['wer']:+.2f} (p={row['p']:.3f})"
        elif row is not table[0]:
            verdict = "reference (LM)"
        bits = "—" if row["average_bits"] is None else f"{row['average_bits']:.2f}"
        size = _with_ratio(f"{row['file_mb']:.2f}", row, "size_ratio", " ({:.1f}x smaller)")
        if row.get("size_ratio", 2.0) < 1.05:
            size = f"{row['file_mb']:.2f}"
        latency = _with_ratio(f"{row['chunk_ms_p50']:.1f}", row, "latency_ratio", " ({:.2f}x)")
        memory = _with_ratio(f"{row['peak_rss_mib']:.0f}", row, "memory_ratio", " ({:.2f}x)")
        lines.append(f"| {row['system']} | {row['wer']:.2f} | {versus} | {verdict} | "
                     f"{bits} | {size} | {latency} | {row['rtf']:.3f} | {memory} |")
    return "\n".join(lines)


def headline(bench: dict) -> list[str]:
    """The bench's headline ratios (MPQ = kernels chosen at load + cache), against the peers as they run today
    and against the peers with the front-end cache too."""
    head, lines = bench["headline"], []
    for keys, against in ((("latency_ratio_mpq_over_fp32", "latency_ratio_mpq_over_ort_int8",
                            "rss_ratio_mpq_over_fp32"), "the peers as they run today"),
                          (("latency_ratio_mpq_over_fp32_cached", "latency_ratio_mpq_over_ort_int8_cached",
                            "rss_ratio_mpq_over_fp32_cached"), "the peers with the front-end cache too")):
        parts = [f"`{key}` = {head[key]:.2f}" for key in keys if head.get(key) is not None]
        if parts:
            lines.append(f"- against {against}: " + ", ".join(parts))
    return lines


def markdown(result: dict) -> str:
    cfg, s = result["config"], result["seconds"]
    cached = any(row.get("frontend_cache") == "on" for row in result["table"])
    return "\n".join([
        "# speechmpq pipeline: FP32 vs one-stage mixed precision", "",
        f"Command: `speechmpq {' '.join(cfg['extra'].get('argv', ['pipeline']))}`  ",
        f"Machine: {result['machine']}. Date: {result['date']}. Wall time {s['total'] / 60:.1f} min "
        f"(corpus {s['corpus']:.0f} s, quantize {s['quantize']:.0f} s, export {s['export']:.0f} s, "
        f"stream {s['stream']:.0f} s" + (f", verdicts {s['verdicts']:.0f} s" if "verdicts" in s else "")
        + ").", "",
        f"Model `{cfg['model']}`, one-stage MPQ ({cfg['steps']} steps of {cfg['batch_seconds']:g} s batches"
        + (f" + {cfg['pass2_steps']} Pass-2 steps" if cfg["pass2_steps"] else "") + ", "
        f"weight lr {cfg.get('lr', 2e-4):g}, {cfg.get('granularity', 'per-tensor')} step sizes"
        + (f" in blocks of {cfg['group_size']}" if cfg.get("group_size") not in (None, "None") else "")
        + f", target {cfg['target_bits']} "
        f"{'stored bits' if cfg.get('budget') == 'stored-bits' else 'bits'}, candidates 2/4/8) on "
        f"{cfg['train_hours']} h of synthetic "
        f"speech; WER on {cfg['test_utterances']} clean test utterances streamed through the runtime "
        "(greedy CTC, and with the LM decoder in the LM rows, each compared with FP32 decoded the same "
        "way; the model's recommended chunking); latency = model time per chunk and peak RSS in "
        "fresh processes (medians over interleaved runs). Average bits are over the searched layers "
        "(the transformer linears); file sizes are the .onnx files.", "",
        format_table(result["table"]), "",
        f"Headline ({result.get('threads', 2)} threads, medians over interleaved runs; MPQ = kernels "
        f"chosen at load{' + front-end cache' if cached else ', no front-end cache (the model has none)'}):",
        "", *result.get("headline", []), "",
        *verdicts_markdown(result.get("verdicts"), cfg, result.get("protocol")),
        f"Benchmark report with plots: `{result['bench_report']}`.", ""])


def verdicts_markdown(report: dict | None, cfg: dict, protocol: dict | None = None) -> list[str]:
    """The verdict section; ``protocol``: the run's recorded dev/test protocol (absent in older runs)."""
    if not report:
        return []
    from speechmpq.jobs.verdicts import results_table as wer_table
    from speechmpq.jobs.verdicts import verdicts_table

    n = cfg.get("verdict_utterances", 750)
    overall = "**yes**" if report["lossless"] else "**NO**"
    stated = [] if protocol is None else [
        f"Judged on {protocol['judged_on']}; the pipeline's default settings were chosen on "
        f"{protocol['defaults_chosen_on']}.", ""]
    real = report.get("real_speech")
    real_text = "" if not real else (
        f"; `real-speech`: people reading, `{real['manifest']}`, decoded greedy"
        + (f" and with the general LM `{real['lm']}` (LM weight {real['lm_weight']:g}, word score "
           f"{real['word_score']:g})" if real.get("lm") else ""))
    return [*stated,
            "Lossless verdict with power (offline, one window per utterance; each synthetic corpus = "
            f"test-clean + test-other, {n} utterances each, pooled; `grammar-text`: the grammar's sentences, "
            f"`heldout-text`: sentences from another text source{real_text}; MPQ against FP32 decoded the "
            "same way, lossless = not significantly worse, MAPSSWE one-sided alpha 0.025 (two-sided p "
            "shown), and the bootstrap 95 % interval of WER(MPQ) - WER(FP32)): MPQ is "
            f"lossless on every corpus, greedy" + (" and with the LM" if report.get("lm") else "")
            + f": {overall}.", "", *verdicts_table(report["verdicts"]), "",
            "WER % on every set (greedy" + (" and with the LM" if report.get("lm") else "") + "):", "",
            *wer_table(report["results"]), ""]
