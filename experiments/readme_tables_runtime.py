"""The generated blocks of docs/ about running the model: benchmarks, kernels, streaming, reliability,
the emulated-CPU checks (the index of results/ is readme_tables_index.py).

Importing this module registers its blocks in ``readme_tables_blocks.BLOCKS`` (see readme_tables.py).
"""

from __future__ import annotations

from readme_tables_blocks import (
    PIPELINE,
    Results,
    block,
    cpu_name,
    machine_and_date,
    made_by,
    p_value,
    percent,
    points,
    spread,
    table,
)

from speechmpq.kernel_table import FP32, level_totals, parse_kernel

# --- docs/benchmarks.md ---------------------------------------------------------------------------

OLD_PLAN = "results/plans/demo-mpq-2.44bits.bitplan.json"  # the first demo-mpq's plan, a --plan-pattern


def _old_plan(res: Results) -> str:
    return f"the first demo-mpq plan ({res.json(OLD_PLAN)['average_bits']:.2f} bits)"


def _main_job_plan(res: Results) -> str:
    return f"its pipeline plan ({res.json(PIPELINE)['quantize']['average_bits']:.2f} bits)"


BENCHES = (  # file, model, which plan its MPQ row uses
    ("results/bench_w2v2-base.json", "wav2vec2-base shape, random weights", _old_plan),
    ("results/bench_w2v2-base_xeon.json", "wav2vec2-base shape, random weights", _old_plan),
    ("results/bench_hubert-large.json", "HuBERT-large shape, random weights", _old_plan),
    ("results/bench_hubert-large_xeon.json", "HuBERT-large shape, random weights", _old_plan),
    ("results/bench_demo.json", "demo model, stage-1", _old_plan),
    ("results/pipeline/bench.json", "demo model, current", _main_job_plan),
)
BENCH_SOURCES = (*(path for path, _, _ in BENCHES), OLD_PLAN, PIPELINE)
RATIOS = ("latency_ratio_mpq_over_fp32", "latency_ratio_mpq_over_ort_int8", "rss_ratio_mpq_over_fp32",
          "latency_ratio_mpq_over_fp32_cached", "latency_ratio_mpq_over_ort_int8_cached")
TARGETS = (  # headline key, bound, what issue 16 asked for
    ("latency_ratio_mpq_over_fp32", 0.40, "MPQ / FP32 latency ≤ 0.40"),
    ("latency_ratio_mpq_over_ort_int8", 0.70, "MPQ / ORT int8-dynamic latency ≤ 0.70"),
    ("rss_ratio_mpq_over_fp32", 0.40, "MPQ / FP32 peak RSS ≤ 0.40"),
    ("latency_ratio_mpq_over_ort_int8_cached", 0.90, "MPQ / ORT int8-dynamic ≤ 0.90, both cached"),
)


def _bench_row(res: Results, path: str) -> tuple[dict, dict, str, str]:
    bench = res.json(path)
    head = bench["headline"]
    latency = bench["latency"][str(head["threads"])]
    machine, date = machine_and_date(bench)
    return head, latency, machine, date


@block("bench-shapes", *BENCH_SOURCES)
def bench_shapes(res: Results) -> str:
    rows = []
    for path, shape, plan in BENCHES:
        head, latency, machine, date = _bench_row(res, path)
        mpq, fp32 = (latency[head[label]]["file_bytes"] / 1e6 for label in ("mpq", "fp32"))
        rows.append([f"{shape}; {plan(res)}", f"{machine}, {date}", f"{mpq:.1f} / {fp32:.1f}",
                     *(spread(head[f"{key}_spread"]) for key in RATIOS), f"`{path}`"])
    header = ["model; MPQ plan", "CPU, date", "MPQ / FP32 MB", "latency / FP32", "latency / ORT int8",
              "peak RSS / FP32", "both cached: latency / FP32", "both cached: latency / ORT int8", "file"]
    return table(header, rows)


@block("bench-targets", *(path for path, _, _ in BENCHES))
def bench_targets(res: Results) -> str:
    rows = []
    for key, bound, wanted in TARGETS:
        met, missed = [], []
        for path, shape, _ in BENCHES:
            head, _, machine, _ = _bench_row(res, path)
            value = head[f"{key}_spread"]["median"]
            where = f"{shape.split(',')[0]} on {machine.split(',')[0]}"
            (met if value <= bound else missed).append(f"{where} {value:.2f}")
        rows.append([wanted, "; ".join(met) or "none", "; ".join(missed) or "none"])
    return table(["target", "met (median)", "missed (median)"], rows)


PROFILED = tuple(path for path, _, _ in BENCHES if path != "results/pipeline/bench.json")  # ran --profile


@block("bench-profile", *PROFILED)
def bench_profile(res: Results) -> str:
    rows = []
    for path in PROFILED:
        bench = res.json(path)
        profile, head = bench["profile"], bench["headline"]
        machine, _ = machine_and_date(bench)
        cells = []
        for uncached, cached in (("fp32", "fp32_cached"), ("ort_int8", "ort_int8_cached"), ("mpq", None)):
            plain = profile[head[uncached]] if cached else profile[head["mpq"].removesuffix("-cache")]
            after = profile[head[cached]] if cached else profile[head["mpq"]]
            cells.append(f"{plain['op_ms']['Conv']:.0f} → {after['op_ms']['Conv']:.0f} "
                         f"({plain['run_ms']:.0f} → {after['run_ms']:.0f})")
        rows.append([f"`{path}`", machine, *cells])
    header = ["file", "CPU", "FP32: conv ms (window ms), no cache → cache", "ORT int8-dynamic: same",
              "MPQ kernel map: same"]
    return table(header, rows)


KERNEL_TABLES = ("results/kernels_w2v2-base.json", "results/kernels_w2v2-base_xeon.json",
                 "results/kernels_demo.json", "results/kernels_demo_xeon.json")


def _best(totals: dict, bits: int, kind: str) -> tuple[str, int, float] | None:
    """The fastest kernel of KIND storing BITS over every accuracy level: (kernel, level, total ms)."""
    found = [(ms, kernel, level) for level, per_bits in totals.items()
             for kernel, ms in per_bits.get(bits, {}).items() if parse_kernel(kernel)[0] == kind]
    if not found:
        return None
    ms, kernel, level = min(found)
    return kernel, level, ms


@block("kernels", *KERNEL_TABLES)
def kernels(res: Results) -> str:
    rows = []
    for path in KERNEL_TABLES:
        data = res.json(path)
        totals = level_totals(data)
        fp32 = totals[0][32][FP32]
        cells = []
        for bits in (2, 4, 8):
            dynamic, nbits = _best(totals, bits, "int8-dynamic"), _best(totals, bits, "nbits")
            cells.append(f"int8-dynamic {dynamic[2] / fp32:.2f}; best MatMulNBits {nbits[2] / fp32:.2f} "
                         f"({nbits[0].split('-')[1]}, level {nbits[1]})")
        conv = [k["ratio_to_fp32"] for layer in data["conv"] if layer["input"] == "window"
                for k in layer["kernels"] if k["kernel"] != FP32]
        machine = data["machine"]
        isa = ", ".join(flag for flag in machine.get("isa", []) if "vnni" in flag or "amx" in flag)
        rows.append([data["preset"], f"{cpu_name(machine['cpu'])} ({isa or 'no VNNI'}), {machine['date']}",
                     f"{fp32:.1f}", *cells, f"{min(conv):.1f}–{max(conv):.1f}", f"`{path}`"])
    header = ["linear shapes of", "CPU, date", "fp32 ms (all linears)", "2-bit / fp32", "4-bit / fp32",
              "8-bit / fp32", "ConvInteger / fp32 conv", "file"]
    return table(header, rows)


# --- docs/streaming.md ----------------------------------------------------------------------------


@block("streaming-sweep", "results/streaming_sweep.json")
def streaming_sweep(res: Results) -> str:
    sweep = res.json("results/streaming_sweep.json")
    rows = [[f"{s['chunk_ms']} / {s['left_ms']} / {s['right_ms']}", str(s["algorithmic_latency_ms"]),
             percent(s["wer"]), f"{points(s['streaming_minus_offline_wer'])} (p {p_value(s['p_value'])})",
             f"{100 * s['identical_fraction']:.0f} %", f"{s['calls_per_audio_second']:.2f}"]
            for s in sweep["settings"]]
    header = ["chunk / left / right ms", "algorithmic latency ms", "streamed WER %", "streamed − offline",
              "transcripts = offline", "model calls per s of audio"]
    return "\n".join([
        made_by(sweep["command"], f"{sweep['machine']}, onnxruntime {sweep['onnxruntime']}, "
                f"{sweep['threads']} threads", sweep["date"])
        + f" Model `{sweep['model']}` as committed that day; {sweep['utterances']} utterances, offline WER "
        f"{percent(sweep['offline_wer'])} %.", "",
        table(header, rows, right={1, 2, 5})])


@block("lm-tune", "results/lm_tune.json")
def lm_tune(res: Results) -> str:
    tune = res.json("results/lm_tune.json")
    machine, date = machine_and_date(tune)
    settings = ("lm_weight", "word_score", "beam_size", "prune")
    rows = [[r["decoder"], *(str(r.get(key, "—")) for key in settings), percent(r["wer"]), percent(r["cer"]),
             f"{r['ms_per_second_of_audio']:.2f}"] for r in tune["rows"]]
    header = ["decoder", "LM weight", "word score", "beam", "prune (nats)", "WER %", "CER %",
              "decoding ms per s of audio"]
    return "\n".join([made_by(tune["command"], machine, date), "", table(header, rows, right={5, 6, 7})])


@block("frontend-cache", "results/frontend_cache.json")
def frontend_cache(res: Results) -> str:
    run = res.json("results/frontend_cache.json")
    exact, group = run["exact"], run["group"]
    return "\n".join([
        made_by(run["command"], run["machine"], run["date"][:10]),
        f"- Layer-norm front end (`{exact['model']}`, `{exact['frontend_cache']}`): "
        f"{exact['identical_transcripts']} of {exact['utterances']} streamed transcripts identical with "
        f"and without the cache; WER {percent(exact['wer_cache_on'])} % vs "
        f"{percent(exact['wer_cache_off'])} %.",
        f"- Group-norm front end (`{group['model']}`, random weights, `{group['frontend_cache']}`): over "
        f"{group['frames']} committed frames of {group['utterances']} utterances the cached logits deviate "
        "by "
        f"{100 * group['mean_relative_logit_deviation']:.1f} % on average (max "
        f"{100 * group['max_relative_logit_deviation']:.1f} %) and the frame argmax agrees on "
        f"{100 * group['frame_argmax_agreement']:.0f} %; no trained group-norm model exists here, so there "
        "is no WER to report."])


# --- docs/reliability.md --------------------------------------------------------------------------

SOAKS = (  # file, how it was run
    ("results/soak_realtime_1stream_alone.json", "paced in real time, alone"),
    ("results/soak_realtime_1stream.json", "paced in real time, beside the 4-stream run"),
    ("results/soak_realtime_4stream.json", "paced in real time, beside the 1-stream run"),
    ("results/soak.json", "flat out"),
    ("results/soak_1stream_rerun.json", "flat out, rerun"),
    ("results/soak_1stream_run3.json", "flat out, third run"),
    ("results/soak_1stream_run3_glibc.json", "flat out, third run"),
)


def _span(values: list[float], form: str) -> str:
    """The range of VALUES formatted with FORM ("a to b"), or one value when both ends print alike."""
    low, high = form.format(min(values)), form.format(max(values))
    return low if low == high else f"{low} to {high}"


@block("soak", *(path for path, _ in SOAKS))
def soak(res: Results) -> str:
    rows, machines = [], set()
    for path, how in SOAKS:
        run = res.json(path)
        machines.add(run["machine"])
        for result in run["results"]:
            streams = result["per_stream"]
            rows.append([
                f"[{how}](../{path.replace('.json', '.md')})", str(result["streams"]),  # from docs/
                result["allocator"],
                f"{result['rss_baseline_mib']:.0f} → {result['rss_max_after_warmup_mib']:.0f} MiB "
                f"({100 * result['rss_growth']:+.1f} %)",
                f"{_span([s['p99_first_10min_ms'] for s in streams], '{:.1f}')} → "
                f"{_span([s['p99_last_10min_ms'] for s in streams], '{:.1f}')} ms "
                f"({_span([100 * s['p99_drift'] for s in streams], '{:+.1f}')} %)",
                _span([s["p50_ms"] for s in streams], "{:.1f}"),
                f"{sum(s['segments'] for s in streams)} / {sum(s['utterances'] for s in streams)}",
                _span([100 * s["wer"] for s in streams], "{:.1f}"),
                "PASS" if result["passed"] else "**FAIL**"])
    header = ["run (its .md)", "streams", "allocator", "RSS after warm-up → max",
              "p99 per chunk, first → last 10 min (drift)", "p50 ms", "segments / utterances",
              "WER % per stream", "verdict"]
    return "\n".join([f"Machine: {'; '.join(sorted(machines))} (dates in each .md, commands in each file).",
                      "", table(header, rows)])


@block("robustness", "results/robustness.json")
def robustness(res: Results) -> str:
    report = res.json("results/robustness.json")
    cases, tests = report["cli"], report["tests"]
    groups: dict[str, list[dict]] = {}
    for test in tests:
        groups.setdefault(test["group"], []).append(test)
    passed = sum(t["outcome"] == "passed" for t in tests)
    lines = [f"- Command-line cases: {sum(c['passed'] for c in cases)} of {len(cases)} behave as expected; "
             f"{sum(c['traceback'] for c in cases)} print a traceback.",
             f"- Reliability tests: {passed} of {len(tests)} passed:"]
    lines += [f"  - {group}: {sum(t['outcome'] == 'passed' for t in members)} of {len(members)}"
              for group, members in groups.items()]
    return "\n".join(lines)


# --- docs/edge-demos.md ---------------------------------------------------------------------------


@block("arm", "results/arm.json")
def arm(res: Results) -> str:
    report = res.json("results/arm.json")
    reference = report["reference"]
    rows = []
    for run in report["runs"]:
        for level, clips in run["levels"].items():
            rows.append([run["name"], level,
                         ", ".join(f"{c['max_logit_difference']:.1e}" for c in clips.values()),
                         ", ".join(f"{c['tolerance']:.1e}" for c in clips.values()),
                         "yes" if all(c["same_text"] for c in clips.values()) else "**no**",
                         "pass" if all(c["passed"] for c in clips.values()) else "**fail**"])
    header = ["emulated CPU", "accuracy level", "max abs logit difference to x86, per clip", "tolerance",
              "same transcripts", "verdict"]
    return "\n".join([
        f"Reference: {reference['machine']}, onnxruntime {reference['onnxruntime']}, `{reference['model']}` "
        f"as committed that day, {reference['threads']} thread. Overall: "
        f"**{'PASS' if report['passed'] else 'FAIL'}**.", "",
        table(header, rows)])


# --- emulated CPUs, kernels at load, the front-end cache, serving (docs/edge-demos.md, streaming.md) --


@block("x86-haswell", "results/x86_haswell.json", "results/x86_haswell_control.json")
def x86_haswell(res: Results) -> str:
    report, control = res.json("results/x86_haswell.json"), res.json("results/x86_haswell_control.json")
    rows = []
    for summary in report["models"]:
        model = summary["reference"]["model"].rsplit("/", 1)[-1]
        emulated = summary["runs"][0]
        for level, native in summary["reference"]["levels"].items():
            clips = emulated["levels"][level]
            rows.append([f"`{model}`", level, native["kernels"].split(": ", 1)[-1].split(";")[0],
                         emulated["report"]["levels"][level]["kernels"].split(": ", 1)[-1].split(";")[0],
                         "yes" if all(c["same_text"] for c in clips.values()) else "**no**",
                         ", ".join(f"{c['max_logit_difference']:.1e}" for c in clips.values()),
                         "pass" if all(c["passed"] for c in clips.values()) else "**fail**"])
    header = ["model", "level", "kernels, native x86 (VNNI)", "kernels, emulated Haswell",
              "same transcripts", "max abs logit difference per clip", "verdict"]
    worst = max(c["max_logit_difference"] for run in control["runs"] for clips in run["levels"].values()
                for c in clips.values())
    changed = sum(not c["same_text"] for run in control["runs"] for clips in run["levels"].values()
                  for c in clips.values())
    total = sum(len(clips) for run in control["runs"] for clips in run["levels"].values())
    return "\n".join([
        f"Native: {report['models'][0]['reference']['machine']}, onnxruntime "
        f"{report['models'][0]['reference']['onnxruntime']}; emulated: qemu-x86_64, QEMU_CPU=Haswell, the "
        f"same venv. Overall: **{'PASS' if report['passed'] else 'FAIL'}**.", "",
        table(header, rows), "",
        f"Negative control (the 8-bit model with its kernels chosen for a VNNI CPU, run as stored on "
        f"Haswell): **{'FAIL, as it must' if not control['passed'] else 'PASS: the check is blind'}**; "
        f"largest logit difference {worst:.2f}, {changed} of {total} clip transcripts changed."])


@block("groupnorm-cache", "results/groupnorm_cache.json")
def groupnorm_cache(res: Results) -> str:
    report = res.json("results/groupnorm_cache.json")
    rows = []
    for role in ("dev", "test"):
        row = report.get(role)
        if row:
            rows.append([role, f"{row['streams']} ({row['audio_seconds'] / 60:.0f} min)",
                         percent(row["wer_cache_off"]), percent(row["wer_cache_on"]),
                         f"{row['difference_points']:+.2f}", f"{row['mapsswe']['p_value']:.2f}",
                         "yes" if row["cache_worse"] else "no",
                         f"{row['chunk_ms_p50_cache_off']:.1f} → {row['chunk_ms_p50_cache_on']:.1f}"])
    header = ["data", "streams (audio)", "WER % cache off", "WER % cache on", "on − off (points)", "p",
              "cache worse", "chunk ms p50 off → on"]
    return "\n".join([
        f"`{report['model']}` ({report['model_note']}); streams of {report['join']} utterances, "
        f"{report['chunking']}; greedy. {_where(report)}. Worse = MAPSSWE one-sided α = 0.025.",
        "", table(header, rows, right={2, 3, 4, 5}), "", f"Policy chosen on dev: {report['policy']}."])


@block("serve-load", "results/serve_load.json")
def serve_load(res: Results) -> str:
    report = res.json("results/serve_load.json")
    rows = [[str(r["streams"]), "batched" if r["batched"] else "one stream per call",
             f"{r['chunk_latency_ms']['p50']:.1f}", f"{r['chunk_latency_ms']['p99']:.1f}",
             f"{r['rtf_per_stream']['median']:.3f}", f"{r['server_cpu_cores']:.2f}",
             f"{r['peak_rss_mib']:.0f}"]
            for r in report["rows"]]
    header = ["streams", "decoding", "chunk latency p50 ms", "p99 ms", "RTF per stream", "server CPU cores",
              "peak RSS MiB"]
    return "\n".join([
        f"`{report['model']}`, {report['seconds']:g} s of real-time audio per stream, "
        f"{report['chunk_ms']} ms chunks; {_where(report)}.", "",
        table(header, rows, right={0, 2, 3, 4, 5, 6})])


@block("kernel-load", "results/kernel_load.json")
def kernel_load(res: Results) -> str:
    report = res.json("results/kernel_load.json")
    rows = [[f"`{r['model'].rsplit('/', 1)[-1]}`", r["way"], f"{r['load_seconds']:.2f}",
             f"{r['peak_rss_mib']:.0f}", r["kernels"].split(": ", 1)[-1].split(";")[0]]
            for r in report["rows"]]
    return "\n".join([f"{_where(report)}; accuracy level {report['accuracy_level']}, medians of "
                      f"{report['repetitions']} fresh processes.", "",
                      table(["model", "way", "load s", "peak RSS MiB", "kernels"], rows, right={2, 3})])


def _where(report: dict) -> str:
    machine, date = machine_and_date(report)
    return f"{machine}, {str(date)[:10]}"


# --- README: one file on every CPU -------------------------------------------------------------------

DEVICE_SOURCES = ("results/x86_haswell.json", "results/x86_haswell_control.json", "results/arm.json",
                  "results/arm_ffn8.json", "results/serve_load.json", "results/groupnorm_cache.json")


def _counts(summary: str) -> str:
    """'kernels (auto, ...; source): 24 int8-dynamic-from2, 12 nbits8-block256; ...' -> the counts."""
    return summary.split("): ", 1)[-1].split(";")[0] if summary else "(not recorded)"


@block("devices", *DEVICE_SOURCES)
def devices(res: Results) -> str:
    rows = []
    checks = [("results/x86_haswell.json", None), ("results/arm.json", "demo-mpq.onnx"),
              ("results/arm_ffn8.json", "demo-ffn8.onnx")]
    seen_native = set()
    for path, model_name in checks:
        report = res.json(path)
        summaries = report.get("models", [report])
        for summary in summaries:
            name = model_name or summary["reference"]["model"].rsplit("/", 1)[-1]
            native = summary["reference"]["levels"]["4"]
            if name not in seen_native:
                seen_native.add(name)
                rows.append(["x86-64, VNNI (native, the reference)", f"`{name}`",
                             _counts(native.get("kernels")), "—", "—"])
            for run in summary["runs"]:
                clips = run["levels"]["4"]
                cpu = {"Haswell": "x86-64 Haswell: AVX2, no VNNI (qemu)", "neoverse-n1":
                       "aarch64 Neoverse-N1: dotprod (qemu)", "cortex-a72": "aarch64 Cortex-A72 (qemu)"}
                rows.append([cpu.get(run["name"], run["name"]), f"`{name}`",
                             _counts(run["report"]["levels"]["4"].get("kernels")),
                             "yes" if all(c["same_text"] for c in clips.values()) else "**no**",
                             "pass" if all(all(c["passed"] for c in level.values())
                                           for level in run["levels"].values()) else "**fail**"])
    control = res.json("results/x86_haswell_control.json")
    load = {(r["streams"], r["batched"]): r for r in res.json("results/serve_load.json")["rows"]}
    most = max(streams for streams, _ in load)
    batched, alone = load[(most, True)], load[(most, False)]
    cache = res.json("results/groupnorm_cache.json")
    header = ["CPU", "model", "kernels chosen at load (accuracy level 4)", "same transcripts as native",
              "levels 0 and 4"]
    return "\n".join([
        "The .onnx file stores each layer weight-only at its own bits; the runtime picks each layer's "
        "kernel for the CPU it loads on (`speechmpq info MODEL` prints the choice; "
        "[docs/streaming.md](docs/streaming.md)). The same two files on four CPUs, the bundled clips, "
        "offline, streaming and with an LM ([docs/edge-demos.md](docs/edge-demos.md)):", "",
        table(header, rows), "",
        f"- The check can fail: the 8-bit file with its kernels chosen for a VNNI CPU (what exports made "
        f"until now), run as stored on Haswell: **{'FAIL' if not control['passed'] else 'PASS'}** "
        f"(int8-dynamic with full-range codes overflows int16 there).",
        f"- `speechmpq serve`, {most} real-time streams on 2 cores: per-chunk latency p50 / p99 "
        f"{batched['chunk_latency_ms']['p50']:.0f} / {batched['chunk_latency_ms']['p99']:.0f} ms batched "
        f"(the default), {alone['chunk_latency_ms']['p50']:.0f} / {alone['chunk_latency_ms']['p99']:.0f} ms "
        f"one stream per call; server CPU {batched['server_cpu_cores']:.2f} vs "
        f"{alone['server_cpu_cores']:.2f} cores (`results/serve_load.md`).",
        f"- Front-end cache: exact where it says so, tested for every front-end norm x do_normalize x "
        f"normalisation mode; on a trained group-norm model it changes WER by "
        f"{cache['test']['difference_points']:+.2f} points on test "
        f"(p {cache['test']['mapsswe']['p_value']:.2f}; "
        f"policy chosen on dev: {cache['policy']}; `results/groupnorm_cache.md`)."])
