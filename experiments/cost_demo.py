"""What the search pays for: ``quantize --cost bits`` vs ``latency`` vs ``both`` on one model, same steps.

    python experiments/cost_demo.py --model models/demo --corpus data/synth \\
        --kernel-table results/kernels_demo.json --out runs/cost --report results/cost_demo

Per cost, one ``speechmpq quantize`` run folder (the same seed, steps, Pass 2 and batches for all,
through ``mpq_experiments.run_system``, so a rerun resumes) evaluated on dev, test-clean and
test-other, then exported (portable: weight-only at the plan's bits) and benchmarked with
``--kernels int8`` (int8-dynamic wherever exact on the benchmark CPU: the kernels the latency cost
priced). The report gives per plan: the average bits, the stored .onnx size, pooled test WER with the
MAPSSWE verdict against FP32 (measured in PyTorch: weights at the plan's bits, float activations),
the kernel table's predicted latency of the searched layers (those kernels over the same layers in
fp32) and the measured per-chunk streaming latency of the whole model from one ``speechmpq bench``
run (onnxruntime, int8-dynamic kernels: int8 activations; all rows interleaved, front-end cache on,
FP32 as the reference). The WER and latency columns thus measure two different numerics; the report
says so in its column heads. ``--render`` re-writes the report from its JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from mpq_demo import System, run_system
from mpq_demo_report import _load, _significance, _test_wer

from speechmpq.files import atomic_write


def cost_systems(table: Path, target_bits: float, budget: float, pass2_steps: int) -> list[System]:
    common = ["--method", "one-stage", "--pass2-steps", str(pass2_steps)]
    latency = ["--kernel-table", str(table), "--latency-budget", str(budget)]
    return [
        System("fp32", quantized=False),
        System("cost-bits", [*common, "--cost", "bits", "--target-bits", str(target_bits)]),
        System("cost-latency", [*common, "--cost", "latency", *latency]),
        System("cost-both", [*common, "--cost", "both", "--target-bits", str(target_bits), *latency]),
    ]


def predicted_ratio(records: list[dict], plan: dict, table: dict) -> float:
    """Kernel-table time of the searched linear layers with export's kernels, over fp32."""
    shapes = {(s["k"], s["n"]): {e["kernel"]: e["median_ms"] for e in s["kernels"]} for s in table["linear"]}
    chosen, fp32 = 0.0, 0.0
    for record in records:
        layer = plan["layers"].get(record["layer"])
        if layer is None or not record["searched"] or len(layer["shape"]) != 2:
            continue
        kernels = shapes[(layer["shape"][1], layer["shape"][0])]
        chosen += kernels[record["kernel"]]
        fp32 += kernels["fp32"]
    return chosen / fp32


def _run(command: list[str], log: Path) -> None:
    with open(log, "a") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)} (see {log})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo"))
    parser.add_argument("--corpus", type=Path, default=Path("data/synth"))
    parser.add_argument("--kernel-table", type=Path, default=None, help="required unless --render")
    parser.add_argument("--render", action="store_true", help="only re-write REPORT.md from REPORT.json")
    parser.add_argument("--out", type=Path, default=Path("runs/cost"))
    parser.add_argument("--report", type=Path, required=True, help="report prefix: .md and .json")
    parser.add_argument("--target-bits", type=float, default=3.0)
    parser.add_argument("--latency-budget", type=float, default=0.7)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--pass2-steps", type=int, default=40)
    parser.add_argument("--batch-seconds", type=float, default=32.0)
    parser.add_argument("--repetitions", type=int, default=3, help="bench repetitions")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lm", type=Path, default=None,
                        help="also bench the bits plan decoded with this LM (the decoder's cost per chunk)")
    cfg = parser.parse_args(argv)
    if cfg.render:
        report = json.loads(cfg.report.with_suffix(".json").read_text())
        atomic_write(cfg.report.with_suffix(".md"), markdown(report))
        return 0
    if cfg.kernel_table is None:
        parser.error("--kernel-table is required")
    command = "python experiments/cost_demo.py " + " ".join(argv if argv is not None else sys.argv[1:])
    run_cfg = argparse.Namespace(model=cfg.model, corpus=cfg.corpus, out=cfg.out, steps=cfg.steps,
                                 pass2_steps=0, batch_seconds=cfg.batch_seconds, device="cpu",
                                 eval_device="cpu", workers=1, seed=cfg.seed, extra=[])
    cfg.out.mkdir(parents=True, exist_ok=True)
    systems = cost_systems(cfg.kernel_table, cfg.target_bits, cfg.latency_budget, cfg.pass2_steps)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    python = [sys.executable, "-m", "speechmpq"]
    onnx = {}
    for system in systems:
        run_system(system, run_cfg, log)
        folder = cfg.out / system.name
        onnx[system.name] = folder / "model.onnx"
        if not onnx[system.name].is_file():
            source = folder / "model" if system.quantized else cfg.model
            _run(python + ["export", str(source), "--out", str(onnx[system.name]),
                           "--summary", str(folder / "export.json"), "--quiet"], folder / "export.out")
            log(f"{system.name}: exported")
    # the peer a user would pick instead, and the bits plan decoded with the LM (its decoding cost)
    onnx["ort-int8-dynamic"] = cfg.out / "ort-int8-dynamic.onnx"
    if not onnx["ort-int8-dynamic"].is_file():
        _run(python + ["export", str(cfg.model), "--peer", "ort-int8-dynamic", "--out",
                       str(onnx["ort-int8-dynamic"]), "--quiet"], cfg.out / "export.out")
    rows = dict(onnx)
    lm = ["--lm", f"cost-bits-lm={cfg.lm}"] if cfg.lm else []
    if cfg.lm:
        rows["cost-bits-lm"] = onnx["cost-bits"]
    bench = cfg.out / "bench"
    if not Path(f"{bench}.json").is_file():
        log("benchmarking every plan in one run ...")
        _run(python + ["bench", "--models", *[f"{n}={p}" for n, p in rows.items()], "--data",
                       str(cfg.corpus / "test-clean"), "--threads", str(cfg.threads), "--repetitions",
                       str(cfg.repetitions), "--stream-seconds", "15", "--eos-utterances", "3",
                       "--no-wer", "--fp32", "fp32", "--mpq", "cost-bits", "--int8", "ort-int8-dynamic",
                       *lm, "--frontend-cache", *[f"{n}=on" for n in rows],
                       "--kernels", *[f"{n}=int8" for n in rows if n.startswith("cost-")],
                       "--out", str(bench),
                       "--quiet"], cfg.out / "bench.out")
    report = build(cfg, json.loads(Path(f"{bench}.json").read_text()), command)
    atomic_write(cfg.report.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write(cfg.report.with_suffix(".md"), markdown(report))
    print(markdown(report))
    return 0


def build(cfg: argparse.Namespace, bench: dict, command: str) -> dict:
    table = json.loads(cfg.kernel_table.read_text())
    fp32 = _load(cfg.out, "fp32")
    latency = bench["latency"][str(cfg.threads)]
    rows = []
    for name in ("fp32", "cost-bits", "cost-latency", "cost-both"):
        loaded = _load(cfg.out, name)
        measured = latency[name]
        row = {
            "system": name, "test_wer": _test_wer(loaded),
            "file_mb": measured["file_bytes"] / 1e6,
            "chunk_ms_p50": measured["chunk_latency_ms"]["p50"],
            "latency_ratio_over_fp32": _ratio(measured, latency["fp32"]),
        }
        if name != "fp32":
            export = json.loads((cfg.out / name / "export.json").read_text())
            summary = loaded["summary"]
            significance = _significance(fp32, loaded)
            row.update({
                "average_bits": summary["average_bits"],
                "bits_count": {b: sum(1 for e in loaded["bitplan"]["layers"].values() if e["bits"] == b)
                               for b in (2, 4, 8)},
                "kernels": _kernels(measured, export),
                "predicted_searched_latency_ratio": predicted_ratio(
                    export["layers"], loaded["bitplan"], table),
                "p_value": significance["test"]["p_value"],
                "lossless": not significance["test"]["worse"],
                "compression_seconds": summary.get("compression_seconds"),
            })  # fmt: skip
        rows.append(row)
    extra = {}
    for name in ("ort-int8-dynamic", "cost-bits-lm"):
        if name in latency:
            measured = latency[name]
            extra[name] = {"chunk_ms_p50": measured["chunk_latency_ms"]["p50"],
                           "file_mb": measured["file_bytes"] / 1e6,
                           "latency_ratio_over_fp32": measured["latency_ratio_over_fp32"]["median"]}
    if "ort-int8-dynamic" in latency:
        extra["latency_ratio_bits_plan_over_ort_int8"] = _ratio(latency["cost-bits"],
                                                                latency["ort-int8-dynamic"])
    if "cost-bits-lm" in latency:
        extra["lm_decoding_latency_ratio"] = _ratio(latency["cost-bits-lm"], latency["cost-bits"])
    return {"command": command, "machine": bench["machine"], "kernel_table": str(cfg.kernel_table),
            "peers": extra,
            "target_bits": cfg.target_bits, "latency_budget": cfg.latency_budget, "steps": cfg.steps,
            "pass2_steps": cfg.pass2_steps, "test_utterances": sum(
                fp32["eval"][s]["utterances"] for s in ("test-clean", "test-other")), "rows": rows}


def _kernels(measured: dict, export: dict) -> list[str]:
    """The kernels the bench row ran (chosen at load), e.g. ["int8-dynamic-from2", ...]."""
    summary = measured.get("kernels") or ""
    if "): " in summary:
        counts = summary.split("): ", 1)[1].split(";")[0]
        return sorted(part.strip().split(" ", 1)[1] for part in counts.split(","))
    return sorted({r["kernel"] for r in export["layers"] if r.get("searched")})  # baked by an old export


def _ratio(numerator: dict, denominator: dict) -> float:
    """Median over repetitions of the per-repetition chunk-latency ratio."""
    ratios = sorted(a / b for a, b in zip(numerator["chunk_latency_ms_per_repetition"],
                                          denominator["chunk_latency_ms_per_repetition"], strict=True))
    return ratios[len(ratios) // 2]


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [
        "# Search cost: average bits vs kernel-table latency (demo model)", "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; onnxruntime "
        f"{machine['versions'].get('onnxruntime')}, torch {machine['versions'].get('torch')}; "
        f"{machine['date']}.", "",
        f"Command: `{report['command']}`", "",
        f"Each plan: one-stage, {report['steps']} search steps + {report['pass2_steps']} Pass-2 steps, "
        f"same seed and batches; bits target {report['target_bits']}, latency budget "
        f"{report['latency_budget']} (searched layers' kernel-table latency over fp32), kernel table "
        f"`{report['kernel_table']}`.", "",
        "What each column measured (two numerics side by side):", "",
        f"- **test WER %, p, lossless**: PyTorch, weights at the plan's bits (fake quantization), "
        f"**float activations**; greedy, offline, test-clean + test-other pooled "
        f"({report['test_utterances']} utterances); MAPSSWE vs FP32, lossless = not significantly worse "
        "at one-sided alpha 0.025 (two-sided p shown).",
        "- **kernels, predicted latency**: the onnxruntime kernels the searched layers ran as "
        "(int8-dynamic: **int8 activations**, quantized per call) and the kernel table's time for them "
        "over the same layers in fp32.",
        "- **chunk p50 ms, latency / FP32**: onnxruntime, those kernels, one `speechmpq bench` run, "
        "rows interleaved, front-end cache on every row, per-chunk p50 and the median per-repetition "
        "ratio to FP32 (float). The WER of the int8-activation kernels was not measured here "
        "(results/pipeline: the MPQ row streamed through them, no significant change).", "",
        "| plan | avg bits | layers at 2/4/8 | kernels (ORT) | predicted searched-layer latency / fp32 | "
        "file MB | test WER % (PyTorch, float act.) | p | lossless | chunk p50 ms (ORT) | latency / FP32 |",
        "|---|---:|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]  # fmt: skip
    for row in report["rows"]:
        if row["system"] == "fp32":
            lines.append(f"| fp32 | 32 | - | fp32 | 1.00 | {row['file_mb']:.2f} | "
                         f"{100 * row['test_wer']:.2f} | - | reference | {row['chunk_ms_p50']:.1f} | 1.00 |")
            continue
        counts = "/".join(str(row["bits_count"].get(b, row["bits_count"].get(str(b)))) for b in (2, 4, 8))
        lines.append(
            f"| {row['system']} | {row['average_bits']:.2f} | {counts} | {', '.join(row['kernels'])} | "
            f"{row['predicted_searched_latency_ratio']:.2f} | {row['file_mb']:.2f} | "
            f"{100 * row['test_wer']:.2f} | "
            f"{row['p_value']:.3f} | {'yes' if row['lossless'] else 'NO'} | {row['chunk_ms_p50']:.1f} | "
            f"{row['latency_ratio_over_fp32']:.2f} |")
    peers = report.get("peers", {})
    if "ort-int8-dynamic" in peers:
        p = peers["ort-int8-dynamic"]
        lines.append(f"| ORT int8-dynamic (peer) | 8 | - | DynamicQuantizeMatMul | - | {p['file_mb']:.2f} "
                     f"| - | - | - | {p['chunk_ms_p50']:.1f} | {p['latency_ratio_over_fp32']:.2f} |")
    lines.append("")
    if peers.get("latency_ratio_bits_plan_over_ort_int8") is not None:
        lines.append("- bits plan / ORT int8-dynamic per chunk, both with the front-end cache: "
                     f"{peers['latency_ratio_bits_plan_over_ort_int8']:.2f}")
    if peers.get("lm_decoding_latency_ratio") is not None:
        lines.append(f"- bits plan decoded with the LM (`cost-bits-lm`, "
                     f"{peers['cost-bits-lm']['chunk_ms_p50']:.1f} ms p50) / greedy per chunk: "
                     f"{peers['lm_decoding_latency_ratio']:.2f}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
