"""Export every demo system to ONNX and measure it: bytes, ORT op types, parity with PyTorch, WER
through onnxruntime with the MAPSSWE verdict against the FP32 ONNX, and a rough latency figure.

    python experiments/export_demo.py --runs runs/mpq-cpu --fp32 models/demo --data data/synth \\
        --work runs/export-demo --out results/export_demo

Writes ``<out>.json`` (top-level ``headline``), ``<out>.md`` and ``<out>_size_wer.png``. The proper
latency/memory benchmark is ``speechmpq bench``; the milliseconds here are medians of 20 runs on one
10 s input, enough to show what a choice costs (interleaved rounds, 48 runs per figure).
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import onnx
import torch

from speechmpq.audio import load_audio
from speechmpq.datasets import read_dataset
from speechmpq.export import ExportConfig, Source, export_onnx
from speechmpq.runtime import OnnxCTCModel, SessionConfig
from speechmpq.scoring import score_pairs
from speechmpq.significance import mapsswe
from speechmpq.train.evaluate import transcribe_torch
from speechmpq.train.models import feature_settings, load_model, model_vocab

TEST_SPLITS = ("test-clean", "test-other")
PARITY_LENGTHS = (7000, 23456, 48000)  # samples; the trace used 16000


def _systems(runs: Path, fp32: Path, mpq_results: Path) -> list[dict]:
    """name, how to export it, and whether a PyTorch reference exists (for parity)."""
    rows = json.loads(mpq_results.read_text())["rows"]
    one_stage = [r["system"] for r in rows if r["method"] == "one-stage"]
    best = min((r for r in rows if r["method"] == "one-stage" and r["lossless"]),
               key=lambda r: r["average_bits"])["system"]
    systems = [{"name": "fp32", "source": Source(model_dir=fp32), "cfg": {}, "torch": fp32},
               {"name": "fp32-dynamo", "source": Source(model_dir=fp32), "cfg": {"exporter": "dynamo"},
                "torch": fp32}]
    for name in ["uniform-8", *one_stage]:
        systems.append({"name": name, "source": Source(model_dir=runs / name / "model"), "cfg": {},
                        "torch": runs / name / "model", "lossless_in_pytorch": next(
                            r["lossless"] for r in rows if r["system"] == name)})
    systems.append({"name": f"{best}+others-int8", "source": Source(model_dir=runs / best / "model"),
                    "cfg": {"others": "int8"}, "torch": None})
    systems.append({"name": f"{best}+int4-container", "source": Source(model_dir=runs / best / "model"),
                    "cfg": {"min_container_bits": 4}, "torch": runs / best / "model"})
    for peer in ("ort-int8-dynamic", "ort-int4-rtn"):
        systems.append({"name": peer, "source": Source(model_dir=fp32, peer=peer), "cfg": {}, "torch": None})
    systems.append({"name": "ort-int4-rtn-level4", "source": Source(model_dir=fp32, peer="ort-int4-rtn"),
                    "cfg": {"accuracy_level": 4}, "torch": None})
    return systems, best


def _latencies(jobs: list[tuple], rounds: int = 6, reps: int = 8) -> dict:
    """Median and p90 milliseconds per job (key, path, accuracy level, input seconds).

    Jobs are measured in interleaved rounds (A B C ... A B C ...) so machine drift hits all alike,
    and each session is closed before the next opens: idle onnxruntime sessions keep threads
    spinning, which would slow whichever model runs next.
    """
    import gc

    samples: dict = {key: [] for key, *_ in jobs}
    for _ in range(rounds):
        for key, path, level, seconds in jobs:
            model = OnnxCTCModel(path, SessionConfig(threads=2, accuracy_level=level))
            audio = np.random.default_rng(0).standard_normal(int(seconds * 16000)).astype(np.float32) * 0.1
            for _ in range(2):
                model.logits(audio)
            for _ in range(reps):
                start = time.perf_counter()
                model.logits(audio)
                samples[key].append(1000 * (time.perf_counter() - start))
            del model
            gc.collect()
    return {key: {"median": round(float(np.median(v)), 2), "p90": round(float(np.percentile(v, 90)), 2)}
            for key, v in samples.items()}


def _op_types(path: Path, accuracy_level: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        OnnxCTCModel(path, SessionConfig(optimization="extended", accuracy_level=accuracy_level,
                                         optimized_model_path=str(optimized)))
        counts = collections.Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _parity(path: Path, torch_model) -> float:
    """max |logit difference| / max |logit|, ORT with optimisation disabled vs PyTorch."""
    ort_model = OnnxCTCModel(path, SessionConfig(optimization="disabled"))
    worst = 0.0
    for length in PARITY_LENGTHS:
        audio = torch.randn(1, length, generator=torch.Generator().manual_seed(length)) * 0.1
        with torch.no_grad():
            reference = torch_model(audio).logits.numpy()
        worst = max(worst, float(np.abs(ort_model.logits(audio.numpy()) - reference).max()
                                 / np.abs(reference).max()))
    return worst


def _transcribe(path: Path, audios: list[np.ndarray], accuracy_level: int | None = None) -> list[str]:
    model = OnnxCTCModel(path, SessionConfig(threads=2, accuracy_level=accuracy_level))
    return [model.transcribe(a) for a in audios]


def run(args) -> dict:
    from tqdm import tqdm

    systems, best = _systems(args.runs, args.fp32, args.mpq_results)
    if args.only:
        systems = [s for s in systems if s["name"] in args.only or s["name"] == "fp32"]
    utterances = [u for split in TEST_SPLITS for u in read_dataset(args.data / split)]
    audios = [load_audio(u.path) for u in utterances]
    ids, refs = [u.utt_id for u in utterances], [u.transcript for u in utterances]
    args.work.mkdir(parents=True, exist_ok=True)
    rows, fp32_hyps = [], None
    for system in tqdm(systems, desc="export report", unit="model"):
        path = args.work / f"{system['name']}.onnx"
        cfg = ExportConfig(**system["cfg"])
        summary = export_onnx(system["source"], path, cfg, progress=False)
        info = OnnxCTCModel(path).info
        level = None  # the model's own recommendation (metadata)
        hyps = _transcribe(path, audios, level)
        scored = score_pairs(ids, refs, hyps)
        row = {"system": system["name"], "weights": summary["weights"], "exporter": cfg.exporter,
               "bytes": summary["bytes"], "export_seconds": summary["seconds"],
               "average_bits": summary["average_bits"], "accuracy_level": level or info.accuracy_level,
               "ops_after_ort": _op_types(path, level), "wer": scored["wer"], "cer": scored["cer"],
               "size": summary.get("size"), "path": str(path)}  # fmt: skip
        if system["name"] == "fp32":
            fp32_hyps = hyps
        row["vs_fp32_onnx"] = mapsswe(refs, fp32_hyps, hyps)
        row["lossless_vs_fp32_onnx"] = not (row["vs_fp32_onnx"]["significant"]
                                           and row["vs_fp32_onnx"]["mean_difference"] > 0)
        if system.get("torch") is not None:
            torch_model = load_model(system["torch"])
            settings = feature_settings(system["torch"])
            torch_hyps = transcribe_torch(torch_model, utterances, progress=False,
                                          tokens=model_vocab(system["torch"]),
                                          do_normalize=settings["do_normalize"], attention_mask=False)
            torch_wer = score_pairs(ids, refs, torch_hyps)["wer"]
            row["parity"] = {
                "max_logit_difference_relative": _parity(path, torch_model),
                "transcripts_identical_fraction": float(np.mean([a == b for a, b in zip(hyps, torch_hyps,
                                                                                        strict=True)])),
                "pytorch_wer": torch_wer, "wer_minus_pytorch": scored["wer"] - torch_wer,
            }  # fmt: skip
        if summary["weights"] in ("mpq", "uniform-8") and system.get("torch") is not None:
            level4 = _transcribe(path, audios, 4)
            row["accuracy_level_4"] = {
                "wer": score_pairs(ids, refs, level4)["wer"],
                "vs_fp32_onnx": mapsswe(refs, fp32_hyps, level4),
                "transcripts_identical_to_pytorch": float(np.mean(
                    [a == b for a, b in zip(level4, torch_hyps, strict=True)])),
            }  # fmt: skip
        rows.append(row)
        tqdm.write(f"{row['system']}: {row['bytes'] / 1e6:.2f} MB, WER {100 * row['wer']:.2f} %")
    jobs = [((r["system"], level, seconds), Path(r["path"]), level, seconds) for r in rows
            for level in ([None, 4] if "accuracy_level_4" in r else [None]) for seconds in (10.0, 1.0)]
    print(f"latency: {len(jobs)} measurements in interleaved rounds ...")
    timing = _latencies(jobs)
    for row in rows:
        row["latency_ms_10s"] = timing[(row["system"], None, 10.0)]["median"]
        row["latency_ms_1s"] = timing[(row["system"], None, 1.0)]["median"]
        row["latency_p90_ms_10s"] = timing[(row["system"], None, 10.0)]["p90"]
        if "accuracy_level_4" in row:
            row["accuracy_level_4"]["latency_ms_10s"] = timing[(row["system"], 4, 10.0)]["median"]
            row["accuracy_level_4"]["latency_ms_1s"] = timing[(row["system"], 4, 1.0)]["median"]
    fp32_row = next(r for r in rows if r["system"] == "fp32")
    for row in rows:
        row["file_ratio_fp32_over_this"] = round(fp32_row["bytes"] / row["bytes"], 3)
    reference = next((r for r in rows if r["system"] == best), None)
    headline = {
        "reference_system": best,
        "file_ratio_fp32_over_mpq": reference["file_ratio_fp32_over_this"] if reference else None,
        "transcripts_identical_fraction": reference["parity"]["transcripts_identical_fraction"]
        if reference else None,
        "wer_minus_pytorch": reference["parity"]["wer_minus_pytorch"] if reference else None,
        "max_logit_difference_relative_unoptimised": reference["parity"]["max_logit_difference_relative"]
        if reference else None,
    }  # fmt: skip
    return {"headline": headline, "rows": rows, "meta": {
        "command": args.command, "machine": args.machine or platform.processor(), "date": args.date,
        "test_utterances": len(utterances), "splits": list(TEST_SPLITS),
        "versions": _versions(), "threads": 2}}


def _versions() -> dict:
    import onnxruntime
    import transformers

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "transformers": transformers.__version__}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/mpq-cpu"))
    parser.add_argument("--fp32", type=Path, default=Path("models/demo"))
    parser.add_argument("--mpq-results", type=Path, default=Path("results/mpq_demo.json"))
    parser.add_argument("--data", type=Path, default=Path("data/synth"))
    parser.add_argument("--work", type=Path, default=Path("runs/export-demo"))
    parser.add_argument("--out", type=Path, default=Path("results/export_demo"))
    parser.add_argument("--only", nargs="*", default=None, help="systems to run (fp32 always runs)")
    parser.add_argument("--machine", default=None)
    parser.add_argument("--date", default=str(date.today()))
    parser.add_argument("--command", default="python experiments/export_demo.py")
    parser.add_argument("--render-only", action="store_true",
                        help="redraw <out>.md and the plot from an existing <out>.json")
    args = parser.parse_args(argv)
    from export_demo_format import write_report

    report = json.loads(args.out.with_suffix(".json").read_text()) if args.render_only else run(args)
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
