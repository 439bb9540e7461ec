"""The index of results/ (docs/results.md): what each results JSON measured, with the command, machine
and date it records (or the run that wrote it, or the .md beside it). A new results JSON needs a line in
``DESCRIPTIONS``; the block fails loudly without one.

Importing this module registers its block in ``readme_tables_blocks.BLOCKS`` (see readme_tables.py).
"""

from __future__ import annotations

import re
from fnmatch import fnmatch

from readme_tables_blocks import MAIN, PIPELINE, PLANS, Results, block, machine_and_date
from readme_tables_runtime import SOAKS

# --- docs/results.md ------------------------------------------------------------------------------

DESCRIPTIONS = {  # results file (or a glob of several) -> what it measured
    "results/whisper_import.json": "the imported Whisper encoders (tiny.en, base) against CTranslate2's own; "
                                   "what unpadded input and the fixed log-mel ceiling change",
    "results/whisper_models.json": "the Whisper-encoder CTC models and the demo model on real and synthetic "
                                   "speech, greedy and LM, offline and streaming",
    "results/whisper_heads.json": "every Whisper-encoder CTC training run (head, encoder, unfreezing) on "
                                  "real-speech dev: the choice",
    "results/general_lm.json": "the general English LM (pocketsphinx's trigram, converted): load time and "
                               "memory in the runtime",
    "results/arm.json": "aarch64 under qemu: the bundled clips on emulated Neoverse-N1 and Cortex-A72 vs x86",
    "results/bench_demo.json": "demo model (stage-1): FP32, ORT int8/int4 and MPQ, with and without the "
                               "front-end cache: latency, memory, WER",
    "results/bench_hubert-large.json": "HuBERT-large shape, random weights: FP32, ORT int8, MPQ latency, "
                                       "memory",
    "results/bench_hubert-large_xeon.json": "the same on the Xeon",
    "results/bench_w2v2-base.json": "wav2vec2-base shape, random weights: FP32, ORT int8/int4, MPQ latency, "
                                    "memory",
    "results/bench_w2v2-base_xeon.json": "the same on the Xeon",
    "results/cost_demo.json": "`--cost bits|latency|both`: three one-stage plans of the stage-1 demo model",
    "results/cost_demo_bench.json": "the benchmark run behind cost_demo.json",
    "results/demo2_vs_demo.json": "the current demo model against the stage-1 one, greedy and with the LM",
    "results/demo_model.json": "the demo model: WER/CER per split and voice group, training, corpus, input "
                               "level",
    "results/demo_model_eval/*/summary.json": "one split's evaluation of models/demo (+ utterances.tsv), the "
                                              "FP32 reference for `speechmpq eval --compare`",
    "results/export_demo.json": "ONNX export of every mpq_demo system: bytes, parity with PyTorch, WER, "
                                "latency",
    "results/frontend_cache.json": "streaming with vs without the front-end cache",
    "results/frontend_step_time.json": "training step time, the demo's 4-layer conv front end vs "
                                       "wav2vec2's 7",
    "results/kernels_*.json": "every onnxruntime kernel per linear shape and bit width on one CPU (a kernel "
                              "table)",
    "results/frontier_demo.json": "the mixed-precision frontier of the demo model: onnxruntime's "
                                  "weight-only quantizers, hand mixes, RTN, uniform QAT, two-stage and "
                                  "one-stage at their stored bits, dev verdicts (finalists: test verdicts)",
    "results/frontier_whisper-base.json": "the frontier on the Whisper-base CTC model, judged on real "
                                          "speech: onnxruntime's weight-only quantizers, RTN, uniform QAT "
                                          "and one-stage at their stored bits (dev; finalists: test)",
    "results/bench_whisper-*.json": "a Whisper-encoder CTC model: FP32, ORT int8-dynamic and 4-bit RTN "
                                    "latency, memory, WER on real-speech dev",
    "results/lm_demo_committed_dev.json": "the committed models/demo-mpq re-judged on the dev verdict "
                                          "corpora (speechmpq verdict-corpora --role dev)",
    "results/lm_demo*.json": "powered verdicts of one plan against FP32, greedy and with the LM",
    "results/lm_tune.json": "LM decoder weights, beam and pruning on dev utterances",
    "results/lm_beam_whisper.json": "the general LM's beam width and weights per Whisper model, chosen on "
                                    "real-speech dev, judged on test",
    "results/mpq_demo.json": "one-stage vs two-stage vs uniform on the stage-1 demo model",
    "results/pipeline/*.json": "the demo model through `speechmpq pipeline --model models/demo` (the main "
                               "job until 2026-12-07): table, benchmark, powered verdicts",
    "results/pipeline_whisper-base/*.json": "the main job (`bash scripts/demo.sh`) on its default, Whisper "
                                            "base + CTC head: table, benchmark, powered verdicts with real "
                                            "speech",
    "results/plans/demo-mpq-2.44bits.bitplan.json": "the first demo-mpq's bit plan, the `--plan-pattern` of "
                                                    "the random-weight benches",
    "results/plans/demo-ffn8-attn2.bitplan.json": "that plan with every FFN matrix at 8 bits (full-range "
                                                  "codes): the emulated-CPU checks' 8-bit model",
    "results/arm_whisper-base.json": "aarch64 under qemu, as arm.json, on the Whisper-base 4-bit demo model "
                                     "(level 0 passes; level 4 changes a word on Neoverse-N1)",
    "results/arm_ffn8.json": "aarch64 under qemu, as arm.json, on a model with full-range 8-bit layers",
    "results/x86_haswell.json": "x86-64 without VNNI or AVX-512 (qemu Haswell) vs native: the committed "
                                "model and a full-range 8-bit one, kernels chosen per CPU",
    "results/x86_haswell_control.json": "negative control: the 8-bit model with kernels baked for VNNI, "
                                        "run as stored on qemu Haswell (must fail)",
    "results/groupnorm_cache.json": "front-end cache on vs off on a trained group-norm model (dev chose, "
                                    "test judged)",
    "results/serve_load.json": "`speechmpq serve` on loopback: 1/4/16 real-time streams, batched or not",
    "results/kernel_load.json": "load time and memory of choosing kernels at load (stored, rewrite, cached)",
    "results/robustness.json": "bad input through the command line, then every reliability test",
    "results/soak*.json": "an hour of speech through the runtime: RSS, p99 drift, transcript",
    "results/streaming_sweep.json": "streamed vs offline WER over chunk / left / right settings",
    "results/streaming_sweep_whisper-*.json": "the same for a Whisper-encoder CTC model on real-speech dev "
                                              "(chooses the family's streaming window)",
    "results/supernet_step_time_*.json": "supernet step time over a plain fake-quant step",
}
COMMANDS = {  # for the files that record no command: what made them
    "results/arm.json": "bash edge_demo/arm_emulation.sh --model models/demo-mpq.onnx --out results/arm",
    "results/arm_whisper-base.json": "aarch64 under qemu, as arm.json, on the Whisper-base 4-bit demo model "
                                     "(level 0 passes; level 4 changes a word on Neoverse-N1)",
    "results/arm_ffn8.json": "speechmpq export models/demo --plan results/plans/demo-ffn8-attn2.bitplan.json "
                             "--out out/emulation/demo-ffn8.onnx && bash edge_demo/arm_emulation.sh --model "
                             "out/emulation/demo-ffn8.onnx --out results/arm_ffn8",
    "results/robustness.json": "python experiments/robustness.py --out results/robustness --long-hours 2 "
                               "--tests",
    "results/plans/demo-mpq-2.44bits.bitplan.json": "copied from models/demo-mpq/bitplan.json before "
                                                    "commit 063f98b",
    "results/plans/demo-ffn8-attn2.bitplan.json": "the 2.44-bit plan with every feed_forward layer set to 8 "
                                                  "bits (average_bits recomputed, target 6.0)",
}


def _described(path: str, table_of: dict) -> str | None:
    return next((text for pattern, text in table_of.items() if fnmatch(path, pattern)), None)


def _what(path: str) -> str:
    """What a results file measured: the plan or soak it records, else DESCRIPTIONS."""
    plan = next((p for p in PLANS if p.file == path), None)
    soak_run = next((how for file, how in SOAKS if file == path), None)
    what = _described(path, DESCRIPTIONS)
    if what is None:
        raise ValueError(f"{path} has no description in readme_tables_index.DESCRIPTIONS")
    if plan is not None:
        return f"{what}: {plan.model}, {plan.plan}"
    return f"{what}, {soak_run}" if soak_run else what


SAME_RUN = {  # files that record no provenance of their own -> the file of the run that wrote them
    "results/demo_model_eval/*/summary.json": "results/demo_model.json",
    "results/pipeline/*.json": PIPELINE,
    "results/pipeline_whisper-base/*.json": f"{MAIN}/pipeline.json",
}


def _from_markdown(res: Results, path: str, field: str) -> str:
    """FIELD ("Date", "Machine") as the .md beside a JSON states it, for JSONs that record none."""
    markdown = res.root / path.replace(".json", ".md")
    pattern = r"Date: (\d{4}-\d{2}-\d{2})" if field == "Date" else r"(?:Machine|Host): ([^.,\n]+)"
    match = re.search(pattern, markdown.read_text()) if markdown.is_file() else None
    return match[1] if match else "—"


def _provenance(res: Results, path: str) -> tuple[str, str, str]:
    """(command, machine, date) of a results JSON, from itself, the run that wrote it, or its .md."""
    data = res.json(_described(path, SAME_RUN) or path)
    if "config" in data and "extra" in data["config"]:  # pipeline.json records its argv, not a command
        command = "speechmpq " + " ".join(data["config"]["extra"]["argv"])
    else:
        command = data.get("command") or (data.get("meta") or {}).get("command")
    command = command or _described(path, COMMANDS) or "—"
    machine, date = machine_and_date(data)
    machine = _from_markdown(res, path, "Machine") if machine == "—" else machine
    date = _from_markdown(res, path, "Date") if date == "—" else date
    return " ".join(command.split()), machine, date  # a command that spans lines, shown on one


@block("results-index", "results/**/*.json", "results/*.md")
def results_index(res: Results) -> str:
    lines = []
    for path in res.paths("results/**/*.json"):
        command, machine, date = _provenance(res, path)
        lines += [f"- `{path}`: {_what(path)}. {machine}, {date}.", f"  `{command}`"]
    return "\n".join(lines)
