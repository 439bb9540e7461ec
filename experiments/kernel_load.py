"""What choosing kernels at load costs: session creation time and peak memory, per way of loading.

    python experiments/kernel_load.py --models models/demo-mpq.onnx out/kernel_load/w2v2-base.onnx \
        --accuracy-level 4 --repetitions 3 --out results/kernel_load

Each measurement is a fresh process (``OnnxCTCModel`` created once, then one call on 1 s of audio):

    stored       ``--kernels nbits``: the file as it is, nothing read but by onnxruntime
    rewrite      ``--kernels auto``, no cache: the graph read with onnx, each layer rewritten into
                 the kernel chosen for this CPU, the session built from the bytes in memory
    first load   ``auto`` with an empty cache: the rewrite, written to the cache, loaded from there
    cached       ``auto`` with that cache: the choice from the cached facts, the rewritten file loaded

Load seconds = from before ``OnnxCTCModel`` to after it; first call = the 1 s call after it; peak
RSS = the process's VmHWM at the end. Medians over repetitions. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from speechmpq.files import atomic_write
from speechmpq.machine import machine_facts

CHILD = """
import json, sys, time
import numpy as np
began = time.perf_counter()
from speechmpq.runtime import OnnxCTCModel, SessionConfig
from speechmpq.runtime.memory import process_memory
imported = time.perf_counter()
spec = json.loads(sys.argv[1])
model = OnnxCTCModel(spec["model"], SessionConfig(threads=2, kernels=spec["kernels"],
                     accuracy_level=spec["level"], kernel_cache=spec["cache"]))
loaded = time.perf_counter()
model.logits(np.zeros(16000, np.float32))
called = time.perf_counter()
print(json.dumps({"load_seconds": loaded - imported, "first_call_seconds": called - loaded,
                  "peak_rss_mib": process_memory()["hwm_mib"], "kernels": model.kernels.summary()}))
"""

WAYS = {  # way -> (kernels mode, use the cache, empty the cache first)
    "stored": ("nbits", False, False),
    "rewrite": ("auto", False, False),
    "first load": ("auto", True, True),
    "cached": ("auto", True, False),
}


def _child(model: str, way: str, level: int | None, cache: Path) -> dict:
    mode, use_cache, empty = WAYS[way]
    if empty:
        for path in cache.glob("*"):
            path.unlink()
    spec = {"model": model, "kernels": mode, "level": level, "cache": use_cache}
    completed = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True,
                               text=True, env={**os.environ, "SPEECHMPQ_CACHE": str(cache)}, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure(models: list[str], level: int | None, repetitions: int) -> list[dict]:
    from tqdm import tqdm

    rows = []
    bar = tqdm(total=len(models) * len(WAYS) * repetitions, desc="kernel load", unit="process")
    for model in models:
        with tempfile.TemporaryDirectory() as cache:
            samples: dict[str, list[dict]] = {way: [] for way in WAYS}
            for _ in range(repetitions):
                for way in WAYS:  # interleaved; "cached" follows "first load", so its cache is warm
                    samples[way].append(_child(model, way, level, Path(cache)))
                    bar.update()
        for way, runs in samples.items():
            rows.append({"model": model, "file_mb": Path(model).stat().st_size / 1e6, "way": way,
                         "load_seconds": statistics.median(r["load_seconds"] for r in runs),
                         "first_call_seconds": statistics.median(r["first_call_seconds"] for r in runs),
                         "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
                         "kernels": runs[0]["kernels"]})
    bar.close()
    return rows


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = ["# Kernels chosen at load: what loading costs", "",
             f"Command: `{report['command']}`  ",
             f"Machine: {machine['cpu']}, {machine['cores']} cores; onnxruntime "
             f"{machine['versions']['onnxruntime']}; {machine['date']}.", "",
             "Fresh process per measurement, medians over "
             f"{report['repetitions']} interleaved repetitions; accuracy level "
             f"{report['accuracy_level'] if report['accuracy_level'] is not None else 'of each model'}. "
             "stored = the file as it is (`--kernels nbits`); rewrite = `auto`, rewritten in memory every "
             "load; first load = `auto` with an empty cache (rewrite + write); cached = `auto` from the "
             "cache.", "",
             "| model | MB | way | load s | first 1 s call s | peak RSS MiB | kernels |",
             "|---|---:|---|---:|---:|---:|---|"]
    for row in report["rows"]:
        lines.append(f"| `{Path(row['model']).name}` | {row['file_mb']:.1f} | {row['way']} | "
                     f"{row['load_seconds']:.3f} | {row['first_call_seconds']:.3f} | "
                     f"{row['peak_rss_mib']:.0f} | "
                     f"{row['kernels'].split(': ', 1)[-1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--accuracy-level", type=int, default=None)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/kernel_load"))
    args = parser.parse_args(argv)
    report = {"command": "python experiments/kernel_load.py " + " ".join(argv or sys.argv[1:]),
              "machine": machine_facts(), "accuracy_level": args.accuracy_level,
              "repetitions": args.repetitions,
              "rows": measure(args.models, args.accuracy_level, args.repetitions)}
    atomic_write(args.out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write(args.out.with_suffix(".md"), markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
