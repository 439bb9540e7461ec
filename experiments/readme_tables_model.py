"""The generated blocks of docs/ about the method, the plans tried, export and the demo model.

Importing this module registers its blocks in ``readme_tables_blocks.BLOCKS`` (see readme_tables.py).
"""

from __future__ import annotations

from readme_tables_blocks import (
    BLOCKS,
    PLAN_SOURCES,
    PLANS,
    Results,
    block,
    machine_and_date,
    made_by,
    p_value,
    percent,
    points,
    short,
    table,
    verdict_cell,
    verdict_sets,
)


def _yes_no(lossless: bool) -> str:
    return "yes" if lossless else "**NO**"


# --- docs/plans-tried.md --------------------------------------------------------------------------


@block("plans", *PLAN_SOURCES)
def plans(res: Results) -> str:
    rows, references = [], {}
    for plan in PLANS:
        sets = verdict_sets(res.json(plan.file)["verdicts"])
        references.setdefault(plan.model, sets)
        cells = [verdict_cell(sets[name][decoder]) for name in sets for decoder in ("greedy", "lm")]
        rows.append([plan.model, plan.plan, f"{plan.bits(res):.2f}", *cells, f"`{plan.file}`"])
    fp32 = "; ".join(
        f"{model}: " + ", ".join(f"{name} {decoder} {percent(v.get('wer_reference', v.get('wer_fp32')))} %"
                                 for name, per in sets.items() for decoder, v in per.items())
        for model, sets in references.items())
    header = ["FP32 model", "plan", "avg bits", "grammar greedy", "grammar LM", "held-out greedy",
              "held-out LM", "file"]
    return "\n".join([table(header, rows, right={2}), "", f"FP32 WER on the same utterances: {fp32}."])


@block("mpq-demo", "results/mpq_demo.json")
def mpq_demo(res: Results) -> str:
    report = res.json("results/mpq_demo.json")
    meta, head = report["meta"], report["headline"]
    rows = []
    for row in report["rows"]:
        test = row.get("significance", {}).get("test", {})
        seconds = row["compression_seconds"]
        rows.append([row["system"], f"{row['average_bits']:.2f}", f"{row['mb_paper']:.2f}",
                     f"{row['compression_ratio']:.1f}x", percent(row["test_wer"]),
                     p_value(test.get("p_value")), _yes_no(row["lossless"]),
                     f"{seconds:.0f}" if seconds else "—"])
    header = ["system", "avg bits", "MB (paper)", "vs FP32", "test WER %", "p vs FP32", "lossless (600)",
              "compression s"]
    lowest = ", ".join(f"{method} {bits:.2f}" for method, bits in head["lowest_lossless_avg_bits"].items())
    targets = ", ".join(head["compression_time_ratio_per_target"])
    return "\n".join([
        made_by(meta["command"], meta["machine"], meta["date"]) + " Table and plots: "
        f"`{short(meta['report_command'], 80)}` (whole in the JSON).", "",
        table(header, rows, right={1, 2, 3, 4, 5, 7}), "",
        f"- Lowest average bits still lossless on these 600 utterances: {lowest}.",
        f"- Lossless compression one-stage / uniform: {head['lossless_ratio_one_stage_over_uniform']:.2f} "
        f"({head['lossless_ratio_one_stage_over_uniform_stored_containers']:.2f} counting the 2/4/8-bit "
        "containers onnxruntime stores, where 3 bits take 4).",
        "- Compression time two-stage (nas) / one-stage: "
        f"{head['compression_time_two_stage_over_one_stage']:.2f} (median over targets {targets})."])


# --- docs/method.md -------------------------------------------------------------------------------


@block("cost-demo", "results/cost_demo.json")
def cost_demo(res: Results) -> str:
    report = res.json("results/cost_demo.json")
    machine, date = machine_and_date(report)
    rows = []
    for row in report["rows"]:
        if row["system"] == "fp32":
            rows.append(["fp32", "32", "—", f"{row['file_mb']:.2f}", percent(row["test_wer"]), "reference",
                         "1.00", "1.00"])
            continue
        counts = "/".join(str(row["bits_count"][b]) for b in ("2", "4", "8"))
        rows.append([row["system"], f"{row['average_bits']:.2f}", counts, f"{row['file_mb']:.2f}",
                     percent(row["test_wer"]), f"{_yes_no(row['lossless'])} (p {p_value(row['p_value'])})",
                     f"{row['predicted_searched_latency_ratio']:.2f}",
                     f"{row['latency_ratio_over_fp32']:.2f}"])
    peers = report["peers"]
    header = ["`--cost`", "avg bits", "layers at 2/4/8", "file MB",
              f"test WER % ({report['test_utterances']})", "lossless (grammar text only)",
              "kernel-table latency / fp32", "measured chunk / FP32"]
    return "\n".join([
        made_by(report["command"], machine, date) + f" Target {report['target_bits']} bits, latency "
        f"budget {report['latency_budget']}, {report['steps']} + {report['pass2_steps']} Pass-2 steps each.",
        "", table(header, rows, right={1, 3, 4, 6, 7}), "",
        "In the same benchmark run (`results/cost_demo_bench.json`) the bits plan took "
        f"{peers['latency_ratio_bits_plan_over_ort_int8']:.2f}x the chunk time of ORT int8-dynamic, and "
        f"decoding it with the LM {peers['lm_decoding_latency_ratio']:.2f}x greedy."])


@block("supernet-step-time", "results/supernet_step_time_cpu.json", "results/supernet_step_time_h100.json")
def supernet_step_time(res: Results) -> str:
    lines = []
    for path in BLOCKS["supernet-step-time"].sources:
        run = res.json(path)
        device = run["gpu"] or f"CPU ({run['cpu']}, {run['threads']} threads)"
        ratios = ", ".join(f"{r:.2f}" for r in run["ratios"])
        lines.append(f"- {device}: a supernet step takes **{run['supernet_over_plain']:.2f}x** a plain "
                     f"fake-quant step (median of blocks {ratios}; {run['batch_seconds']:.0f} s batches, "
                     f"{run['date']}; `{path}`, command in the file).")
    return "\n".join(lines)


# --- docs/export-format.md ------------------------------------------------------------------------


def _export_row(row: dict) -> list[str]:
    test, parity, level4 = row["vs_fp32_onnx"], row.get("parity"), row.get("accuracy_level_4")
    same = f"{100 * parity['transcripts_identical_fraction']:.0f} %" if parity else "—"
    at4 = (f"{percent(level4['wer'])} (p {p_value(level4['vs_fp32_onnx']['p_value'])}), "
           f"{100 * level4['transcripts_identical_to_pytorch']:.0f} %, {level4['latency_ms_10s']:.1f}"
           if level4 else "—")
    worse = test["significant"] and test["mean_difference"] > 0
    return [row["system"], row["exporter"], f"{row['average_bits']:.2f}" if row["average_bits"] else "—",
            f"{row['bytes'] / 1e6:.2f}", f"{row['file_ratio_fp32_over_this']:.1f}", percent(row["wer"]),
            f"{'**worse**' if worse else 'n.s.'} (p {p_value(test['p_value'])})", same,
            f"{row['latency_ms_10s']:.1f}", f"{row['latency_ms_1s']:.1f}", at4]


@block("export-demo", "results/export_demo.json")
def export_demo(res: Results) -> str:
    report = res.json("results/export_demo.json")
    meta, head = report["meta"], report["headline"]
    header = ["system", "exporter", "avg bits", "MB", "FP32 / this", f"WER % ({meta['test_utterances']})",
              "vs FP32 .onnx", "transcripts = PyTorch", "ms / 10 s", "ms / 1 s",
              "accuracy level 4: WER % (p), = PyTorch, ms / 10 s"]
    return "\n".join([
        made_by(meta["command"], meta["machine"], meta["date"]) + f" onnxruntime "
        f"{meta['versions']['onnxruntime']}, {meta['threads']} threads; milliseconds are medians over "
        "interleaved rounds on one input.", "",
        table(header, [_export_row(row) for row in report["rows"]], right={2, 3, 4, 5, 8, 9}), "",
        "Parity with graph optimisation off: ORT logits within "
        f"{head['max_logit_difference_relative_unoptimised']:.1e} x max abs logit of the PyTorch quantized "
        f"model (`{head['reference_system']}`)."])


# --- docs/demo-model.md ---------------------------------------------------------------------------


@block("demo-model", "results/demo_model.json")
def demo_model(res: Results) -> str:
    card = res.json("results/demo_model.json")
    rows = []
    for split, score in card["scores"].items():
        groups = ", ".join(f"{name} {percent(g['wer'])}" for name, g in score["groups"].items()
                           if name != "all")
        rows.append([split, str(score["utterances"]), percent(score["wer"]), percent(score["cer"]),
                     groups or "—"])
    training, parameters = card["training"], card["training"]["parameters"]
    levels = ", ".join(f"{name}: CER {percent(v['cer'])} %" for name, v in card["input_level"].items())
    corpus = ", ".join(f"{name} {s['utterances']:,} utterances ({s['hours']:.1f} h, written in "
                       f"{s['generation_seconds']:.0f} s by {s['jobs']} processes)"
                       for name, s in card["corpus"]["splits"].items())
    return "\n".join([
        made_by(short(card["command"]), card["machine"], card["date"]) + f" Decoding: {card['decoding']}.",
        "", table(["split", "utterances", "WER %", "CER %", "WER % by voice"], rows, right={1, 2, 3}), "",
        f"- Parameters: {parameters['total']:,}, {100 * parameters['transformer_linear_share']:.0f} % of "
        "them in the transformer linear weights (the layers the search quantizes).",
        f"- Last training stage: {training['steps']} steps from the stage-1 model, "
        f"{training['audio_hours_seen']:.1f} h of audio seen in "
        f"{training['train_wall_seconds'] / 3600:.1f} h on {training['device']}; best dev CER "
        f"{percent(training['best_dev_cer'])} %. Both stages' commands: `train_command` in the JSON.",
        f"- Corpus (`{card['corpus_command']}`): {corpus}.",
        f"- Input level (test-clean): {levels}."])


@block("demo-lm", "results/demo2_vs_demo.json")
def demo_lm(res: Results) -> str:
    run = res.json("results/demo2_vs_demo.json")
    machine, date = machine_and_date(run)
    before, after = run["names"]
    rows = []
    for name, per in run["results"][after].items():
        verdict = run["verdicts"].get(name, {})
        change = ", ".join(f"{decoder} {points(v['wer_candidate'] - v['wer_reference'])} "
                           f"(p {p_value(v['p_value'])})" for decoder, v in verdict.items())
        greedy, lm = per["greedy"], per["lm"]
        rows.append([name, str(greedy["utterances"]), f"{percent(greedy['wer'])} / {percent(greedy['cer'])}",
                     f"{percent(lm['wer'])} / {percent(lm['cer'])}", change or "—"])
    decoder = run["decoder"]
    header = ["set", "utterances", "greedy WER / CER %", "LM WER / CER %", f"`{after}` − `{before}` (points)"]
    return "\n".join([
        made_by(short(run["command"]), machine, date) + f" Offline; LM `{decoder['lm']}`, beam "
        f"{decoder['beam_size']}, LM weight {decoder['lm_weight']}, word score {decoder['word_score']}. "
        f"`{before}` is the stage-1 model, `{after}` the current `models/demo`; the last column is their "
        "paired difference where a verdict was run.", "",
        table(header, rows, right={1})])


@block("frontend-step-time", "results/frontend_step_time.json")
def frontend_step_time(res: Results) -> str:
    run = res.json("results/frontend_step_time.json")
    rows = [[r["front_end"], "bf16" if r["bf16"] else "fp32", f"{r['step_seconds']:.2f}",
             f"{r['audio_seconds_per_second']:.1f}", f"{r['parameters']:,}"] for r in run["rows"]]
    return "\n".join([
        made_by(run["command"], f"{run['machine']}, {run['torch_threads']} torch threads", run["date"])
        + f" One step = forward + CTC + backward + AdamW on {run['batch']}.", "",
        table(["front end", "precision", "s per step", "audio s per s", "parameters"], rows,
              right={2, 3, 4})])
