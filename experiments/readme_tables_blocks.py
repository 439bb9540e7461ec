"""The generated blocks of README.md (see readme_tables.py): what each writes and which JSON it reads.

Each block is a function from the parsed results to Markdown, registered under its marker name
with the files it reads. The formatting helpers every block uses are here, and the plans judged
with power (README's status, docs/plans-tried.md); labels that say what a row is sit beside the
code that picks the row. README's frontier block is in readme_tables_frontier.py; the blocks of
docs/ are in readme_tables_model.py, readme_tables_runtime.py and readme_tables_index.py.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ALPHA = 0.05  # MAPSSWE significance level of every verdict


class Results:
    """The files blocks read, by path relative to the repository root, each parsed once."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._parsed: dict[str, object] = {}

    def json(self, path: str):
        if path not in self._parsed:
            self._parsed[path] = json.loads((self.root / path).read_text())
        return self._parsed[path]

    def text(self, path: str) -> str:
        return (self.root / path).read_text()

    def paths(self, pattern: str) -> list[str]:
        return sorted(path.relative_to(self.root).as_posix() for path in self.root.glob(pattern))


@dataclass(frozen=True)
class Block:
    name: str
    sources: tuple[str, ...]  # files (or glob patterns) under the repository root that render reads
    render: Callable[[Results], str]


BLOCKS: dict[str, Block] = {}


def block(name: str, *sources: str):
    """Register the decorated function as the renderer of block NAME, reading SOURCES."""
    def register(render: Callable[[Results], str]) -> Callable[[Results], str]:
        BLOCKS[name] = Block(name, sources, render)
        return render
    return register


# --- formatting: every figure goes through one of these -----------------------------------------


def percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}"


def points(difference: float) -> str:
    return f"{100 * difference:+.2f}"


def p_value(p: float | None) -> str:
    if p is None:
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def spread(ratio: dict) -> str:
    """A per-repetition ratio: median [min, max]."""
    return f"{ratio['median']:.2f} [{ratio['min']:.2f}, {ratio['max']:.2f}]"


def table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """A Markdown table; columns whose index is in RIGHT are right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def made_by(command: str, machine: str, date: str) -> str:
    return f"Command: `{command}`. Machine: {cpu_name(machine)}. Date: {date}."


def learning_rate(lr: float) -> str:
    """2e-06 -> 2e-6."""
    mantissa, exponent = f"{lr:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def short(command: str, limit: int = 160) -> str:
    """A command cut to LIMIT characters for a caption (results/*.json and docs/results.md hold it whole)."""
    return command if len(command) <= limit else command[:limit].rstrip() + " ..."


def cpu_name(machine: str) -> str:
    """'Intel(R) Xeon(R) Processor, 2 cores' -> 'Intel Xeon, 2 cores'."""
    return re.sub(r"\((R|TM)\)| Processor| CPU", "", machine)


def machine_and_date(data: dict) -> tuple[str, str]:
    """(machine, date) as a results JSON records them; the schemas differ between experiments."""
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    machine = data.get("machine") or meta.get("machine") or data.get("gpu") or data.get("cpu") or "—"
    date = data.get("date") or meta.get("date") or "—"
    if isinstance(machine, dict):
        date = machine.get("date", date)
        cores = f", {machine['cores']} cores" if machine.get("cores") else ""
        machine = f"{machine.get('cpu', machine.get('arch', '—'))}{cores}"
    return cpu_name(str(machine)), str(date)[:10]


def verdict_cell(verdict: dict) -> str:
    """One MPQ-vs-FP32 verdict: yes/NO, the WER difference in points and the MAPSSWE p-value."""
    reference = verdict.get("wer_reference", verdict.get("wer_fp32"))
    candidate = verdict.get("wer_candidate", verdict.get("wer_mpq"))
    word = "yes" if verdict["lossless"] else "**NO**"
    return f"{word} ({points(candidate - reference)}, p {p_value(verdict['p_value'])})"


def verdict_sets(verdicts: dict) -> dict[str, dict]:
    """The powered verdict corpora under one naming: the grammar's text (older files call it
    seen-text), held-out text, and real speech where the run judged it."""
    grammar = verdicts.get("grammar-text", verdicts.get("seen-text"))
    found = {"grammar-text": grammar, "heldout-text": verdicts["heldout-text"]}
    if "real-speech" in verdicts:
        found["real-speech"] = verdicts["real-speech"]
    return found


# --- the plans judged with power (README status, docs/plans-tried.md) -----------------------------

STAGE1 = "stage-1 demo model"
DEMO = "current demo model"
PIPELINE = "results/pipeline/pipeline.json"  # the demo model's pipeline run (the main job until 2026-12-07)
MAIN = "results/pipeline_whisper-base"  # the main job's run: its default model, Whisper base + CTC head


def _result_bits(res: Results, stem: str) -> float:
    """Average bits as the plan's own record states it: the JSON's "model" field, else its .md."""
    data = res.json(f"results/{stem}.json")
    text = data.get("model") or res.text(f"results/{stem}.md")
    match = re.search(r"result (\d+\.\d+)|\((\d+\.\d+) bits", text)
    if match is None:
        raise ValueError(f"results/{stem}: no 'result X bits' in its model description")
    return float(match[1] or match[2])


def _row_bits(res: Results, path: str, system: str) -> float:
    """Average bits of one system of an experiment's "rows" (mpq_demo.json, cost_demo.json)."""
    return next(row["average_bits"] for row in res.json(path)["rows"] if row["system"] == system)


@dataclass(frozen=True)
class Plan:
    file: str  # the JSON with the plan's powered verdicts
    model: str  # the FP32 model it quantizes
    plan: str  # how the plan was made
    bits: Callable[[Results], float]  # its average bits over the searched layers, from its record


PLANS = (
    Plan("results/lm_demo.json", STAGE1, "one-stage, per-tensor, target 2.5 + Pass 2, weight lr 2e-4 (the "
         "first `models/demo-mpq`)", lambda r: _row_bits(r, "results/mpq_demo.json", "one-stage-2.5-pass2")),
    Plan("results/lm_demo_2.89bits.json", STAGE1, "one-stage, per-tensor, target 3.0, `--cost bits` "
         "(experiments/cost_demo.py)", lambda r: _row_bits(r, "results/cost_demo.json", "cost-bits")),
    Plan("results/lm_demo_t6.0.json", DEMO, "one-stage, per-tensor, target 6, weight lr 2e-4",
         lambda r: _result_bits(r, "lm_demo_t6.0")),
    Plan("results/lm_demo_rtn6.json", DEMO, "the plan above by round-to-nearest, no training",
         lambda r: _result_bits(r, "lm_demo_t6.0")),
    Plan("results/lm_demo_t6.0_lr2e-5.json", DEMO, "one-stage, per-tensor, target 6, weight lr 2e-5",
         lambda r: _result_bits(r, "lm_demo_t6.0_lr2e-5")),
    Plan("results/lm_demo_t6.0_lr2e-5_long.json", DEMO, "the same with twice the steps (400 + 80)",
         lambda r: _result_bits(r, "lm_demo_t6.0_lr2e-5_long")),
    Plan("results/lm_demo_pc4.json", DEMO, "one-stage, per-channel, target 4, weight lr 2e-5",
         lambda r: _result_bits(r, "lm_demo_pc4")),
    Plan("results/lm_demo_pc6.json", DEMO, "one-stage, per-channel, target 6, weight lr 2e-5",
         lambda r: _result_bits(r, "lm_demo_pc6")),
    Plan("results/lm_demo_pc4_kl.json", DEMO, "as pc4, trained on the teacher's KL alone (`--ctc-weight 0`)",
         lambda r: _result_bits(r, "lm_demo_pc4_kl")),
    Plan("results/lm_demo_uniform8_pc.json", DEMO, "uniform 8-bit QAT, per-channel, weight lr 2e-5",
         lambda r: _result_bits(r, "lm_demo_uniform8_pc")),
    Plan("results/lm_demo_rtn_pc4.json", DEMO, "pc4's plan by per-channel round-to-nearest, no training",
         lambda r: _result_bits(r, "lm_demo_pc4")),
    Plan("results/lm_demo_pc3.5_lr2e-6.json", DEMO, "one-stage, per-channel, target 3.5, weight lr 2e-6",
         lambda r: _result_bits(r, "lm_demo_pc3.5_lr2e-6")),
    Plan("results/pipeline/verdicts.json", DEMO, "one-stage, per-channel, target 4, weight lr 2e-6: the "
         "pipeline's default, **`models/demo-mpq`**", lambda r: r.json(PIPELINE)["quantize"]["average_bits"]),
)
PLAN_SOURCES = ("results/lm_demo*.json", "results/pipeline/verdicts.json", PIPELINE,
                "results/mpq_demo.json", "results/cost_demo.json", "results/lm_demo_t6.0*.md")


def failed(verdicts: dict) -> list[str]:
    """The verdicts a plan failed, as 'corpus decoder'."""
    return [f"{name} {decoder}" for name, per in verdict_sets(verdicts).items()
            for decoder, verdict in per.items() if not verdict["lossless"]]


# --- README.md ------------------------------------------------------------------------------------

ROWS = {  # pipeline.json row label -> what the row is
    "fp32": "reference: the FP32 graph, conv front end recomputed every window",
    "fp32-cache": "FP32 with the front-end cache",
    "ort-int8-dynamic": "peer: onnxruntime `quantize_dynamic` (int8 weights and activations)",
    "ort-int8-dynamic-cache": "the same peer with the front-end cache",
    "ort-int4-rtn": "peer: onnxruntime INT4 round-to-nearest (`MatMulNBits`, blocks of 32)",
    "mpq-kernelmap": "this project's MPQ export, int8 kernels (that run: chosen at export), no cache",
    "mpq": "**MPQ as shipped: int8 kernels + front-end cache**",
    "fp32-lm": "FP32 + cache, decoded with the word LM",
    "mpq-lm": "MPQ + cache, decoded with the word LM",
}
UNCACHED = {  # the same labels in a run of a model without a front-end cache
    "fp32": "reference: the FP32 graph",
    "mpq": "**MPQ as shipped: kernels chosen at load**",
    "fp32-lm": "FP32 decoded with the word LM",
    "mpq-lm": "MPQ decoded with the word LM",
}


@block("status", "models/demo-mpq/bitplan.json", *PLAN_SOURCES, "results/demo2_vs_demo.json")
def status(res: Results) -> str:
    plan = res.json("models/demo-mpq/bitplan.json")
    counts = Counter(layer["bits"] for layer in plan["layers"].values())
    if len(counts) == 1:
        (bits, layers), = counts.items()
        mix = (f"every one of its {layers} searched layers at {bits} bits: the search chose no mixture, "
               f"so in effect this is {plan['granularity']} round-to-nearest at {bits} bits with learned "
               "step sizes")
    else:
        mix = "bits per layer " + ", ".join(f"{n} at {b}" for b, n in sorted(counts.items()))
    powered = verdict_sets(res.json("results/pipeline/verdicts.json")["verdicts"])
    verdicts = [v for per in powered.values() for v in per.values()]
    sizes = " + ".join(f"{per['greedy']['utterances']:,}" for per in powered.values())
    config = res.json(PIPELINE)["config"]
    below = sorted((p.bits(res), p) for p in PLANS if p.bits(res) < plan["average_bits"])
    below_text = "; ".join(f"{bits:.2f} bits ({p.model}) NO on "
                           f"{', '.join(failed(res.json(p.file)['verdicts']))} (`{p.file}`)"
                           for bits, p in below)
    real = res.json("results/demo2_vs_demo.json")["verdicts"]["realspeech"]
    return "\n".join([
        f"- **Shipped model.** `models/demo-mpq` is the demo model at {plan['average_bits']:.2f} average "
        f"bits, {plan['granularity']} step sizes, {mix} (`models/demo-mpq/bitplan.json`).",
        f"- **Powered verdict.** Against FP32 on {sizes} test utterances, greedy and with the LM, it is "
        f"lossless on {sum(v['lossless'] for v in verdicts)} of {len(verdicts)} verdicts "
        f"(`results/pipeline/verdicts.json`). Its settings ({config['granularity']} steps, weight lr "
        f"{learning_rate(config['lr'])}, target {config['target_bits']:g} bits) were first chosen after "
        "earlier plans had been judged on these same test sets, so this is not an independent test; on "
        "the dev sets they are the only one-stage configuration that stays lossless "
        "(`results/frontier_demo.md`, row `one-stage-pc-4.0-lr2e-6`), which is why they stay the default.",
        f"- **Below {plan['average_bits']:.2f} bits no plan was lossless on all {len(verdicts)} verdicts:** "
        f"{below_text}.",
        "- **Synthetic speech only.** The demo model was trained on eSpeak speech alone and does not "
        f"recognise real human speech: on the {real['greedy']['utterances']} utterances of "
        f"`../shared/realspeech` it gets {percent(real['greedy']['wer_candidate'])} % WER greedy and "
        f"{percent(real['lm']['wer_candidate'])} % with the LM (`results/demo2_vs_demo.json`).",
    ])


def _pipeline_made_by(res: Results) -> str:
    run = res.json(f"{MAIN}/pipeline.json")
    minutes = run["seconds"]["total"] / 60
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in run["seconds"].items()
                       if name != "total" and seconds >= 1)
    command = "speechmpq " + " ".join(run["config"]["extra"]["argv"])
    return (f"{made_by(command, run['machine'], run['date'])} Wall time {minutes:.1f} min ({stages}); "
            f"`bash scripts/demo.sh` runs `speechmpq pipeline` with the flags given to it.")


@block("headline", f"{MAIN}/pipeline.json", f"{MAIN}/bench.json")
def headline(res: Results) -> str:
    run, bench = res.json(f"{MAIN}/pipeline.json"), res.json(f"{MAIN}/bench.json")
    head = bench["headline"]
    latency = bench["latency"][str(head["threads"])]
    wer = {row["label"]: row["wer"] for row in run["table"]}
    cache = any(row["frontend_cache"] == "on" for row in run["table"])
    names = ROWS if cache else {**ROWS, **UNCACHED}  # a run without the cache names its rows plainly
    rows = []
    for row in run["table"]:
        measured = latency[row["label"]]
        reference = row.get("reference")
        versus = (f"{(row['wer'] - wer[reference]):+.2f} (p {p_value(row['p'])})" if reference
                  else "reference")
        verdict = "—" if not reference else "n.s." if row["lossless"] else "**worse**"
        bits = f"{row['average_bits']:.2f}" if row["average_bits"] is not None else "—"
        rows.append([f"`{row['label']}`", names[row["label"]], f"{row['file_mb']:.2f}", bits,
                     f"{row['wer']:.2f}", versus, verdict, f"{row['chunk_ms_p50']:.1f}",
                     spread(measured["latency_ratio_over_fp32"]), f"{row['peak_rss_mib']:.0f}",
                     spread(measured["rss_ratio_over_fp32"])])
    utterances = bench["wer"][head["mpq"]]["utterances"]
    chunk = latency[head["mpq"]]
    caption = (f"WER: {utterances} clean test utterances streamed through the runtime, greedy CTC unless "
               "the row says LM; each row against FP32 decoded the same way (MAPSSWE two-sided p; verdict: "
               f"n.s. = not significantly worse, one-sided α = {ALPHA / 2:g}; at this size only a large loss "
               "would show, "
               "the powered verdict is the next table). Latency: model "
               f"time per {chunk['chunk_ms']} ms chunk ({chunk['left_ms']} ms left context, "
               f"{chunk['right_ms']} ms look-ahead) at {head['threads']} threads, p50; ratios are per "
               "interleaved repetition against the `fp32` row, median [min, max]; memory = peak RSS of "
               "a fresh process.")
    today = (f"- MPQ as shipped against the peers **as they run**{' (no cache)' if cache else ''}: latency / "
             f"FP32 {spread(head['latency_ratio_mpq_over_fp32_spread'])}, latency / ORT int8-dynamic "
             f"{spread(head['latency_ratio_mpq_over_ort_int8_spread'])}, peak RSS / FP32 "
             f"{spread(head['rss_ratio_mpq_over_fp32_spread'])}. This is the ratio `speechmpq pipeline` "
             "prints first" + ("; it compares a cached MPQ with uncached peers, and against ORT int8-dynamic "
                               "the whole gain is the front-end cache." if cache else
                               " (the model's log-mel front end has no cache: every row recomputes it)."))
    if not cache:
        return "\n".join([_pipeline_made_by(res), "", caption, "",
                          table(header_row(), rows, right={2, 3, 4, 7, 9}), "", today])
    cached = (f"- Against the same peers **with the front-end cache too**: latency / FP32 "
              f"{spread(head['latency_ratio_mpq_over_fp32_cached_spread'])}, latency / ORT int8-dynamic "
              f"{spread(head['latency_ratio_mpq_over_ort_int8_cached_spread'])}, peak RSS / FP32 "
              f"{spread(head['rss_ratio_mpq_over_fp32_cached_spread'])}. With the cache on both sides MPQ "
              "and ORT int8-dynamic run the same int8 kernel (on x86 with VNNI 2-, 4- and 8-bit layers alike "
              "go to onnxruntime's int8-dynamic GEMM, `speechmpq/kernel_defaults.json`; that run chose it at "
              "export, the runtime now chooses it at load), so MPQ is smaller on disk but not faster than "
              "int8.")
    return "\n".join([_pipeline_made_by(res), "", caption, "",
                      table(header_row(), rows, right={2, 3, 4, 7, 9}), "", today, cached])


def header_row() -> list[str]:
    return ["row", "what it is", ".onnx MB", "avg bits", "WER %", "vs FP32 (p)", "verdict", "chunk p50 ms",
            "latency / FP32", "peak RSS MiB", "RSS / FP32"]


@block("verdicts", f"{MAIN}/verdicts.json", f"{MAIN}/pipeline.json")
def verdicts(res: Results) -> str:
    report = res.json(f"{MAIN}/verdicts.json")
    rows = []
    for name, per in verdict_sets(report["verdicts"]).items():
        for decoder, v in per.items():
            low, high = v["bootstrap_interval"]
            rows.append([name, decoder, str(v["utterances"]), percent(v["wer_reference"]),
                         percent(v["wer_candidate"]), points(v["wer_candidate"] - v["wer_reference"]),
                         p_value(v["p_value"]), f"[{points(low)}, {points(high)}]",
                         "yes" if v["lossless"] else "**NO**"])
    header = ["corpus", "decoder", "utterances", "FP32 WER %", "MPQ WER %", "MPQ − FP32 (points)", "p",
              "bootstrap 95 % interval", "lossless"]
    real = report.get("real_speech")
    real_text = "" if not real else (
        f"; `real-speech`: `{real['manifest']}` (people reading), its LM `{real['lm']}` (weight "
        f"{real['lm_weight']:g}, word score {real['word_score']:g})")
    return "\n".join([
        f"Offline, one window per utterance; each synthetic corpus is test-clean + test-other pooled; "
        f"lossless = not significantly worse (MAPSSWE one-sided α = {ALPHA / 2:g}, the two-sided p shown) "
        f"and the bootstrap interval of WER(MPQ) − WER(FP32). Same run as above (`{MAIN}/pipeline.json`, "
        f"{res.json(f'{MAIN}/pipeline.json')['date']}); LM of the synthetic corpora: `{report['lm']}`"
        f"{real_text}.", "",
        table(header, rows, right={2, 3, 4, 5, 6}), "",
        f"Lossless on every corpus and decoder: **{'yes' if report['lossless'] else 'no'}**."])
