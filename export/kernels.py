"""``speechmpq kernels``: the latency of every way stock onnxruntime runs a weight, on this machine.

For each distinct linear shape (K, N) of a preset's searched layers, at the row count of the
recommended streaming window, and for each conv layer of its front end (at the window's length and at
the length the front-end cache leaves), one small model per kernel (``export/kernel_graphs.py``) is
timed in this process: sessions built once, then repetitions interleaved (every kernel of a shape once
per round, rounds repeated) so drift hits all alike; each figure is the median over rounds of the mean
of a few calls, with its min and max, and its ratio to fp32 from the same round. Worker threads do
not spin between calls here (many sessions share the cores), so absolute figures are a little
above a lone session's; the ranking is what the kernel map uses.

The JSON is what ``export --kernel-table`` reads; the markdown beside it is for people.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from speechmpq.export.kernel_graphs import (
    ACCURACY_LEVELS,
    FP32,
    INT8_DYNAMIC,
    NBITS_BITS,
    NBITS_BLOCKS,
    conv_model,
    int8_dynamic_id,
    linear_model,
    nbits_id,
    parse_kernel,
)

FORMAT = "speechmpq-kernels/1"
LINEAR_KINDS = ("q_proj", "k_proj", "v_proj", "out_proj", "intermediate_dense", "output_dense")


def window_frames(config, window_ms: int) -> int:
    from speechmpq.export.metadata import conv_geometry

    stride, field = conv_geometry(config)
    return (window_ms * 16 - field) // stride + 1


def linear_shapes(config) -> dict[tuple[int, int], list[str]]:
    """(K, N) -> the matrix kinds of that shape in every transformer block."""
    h, i = config.hidden_size, config.intermediate_size
    shapes: dict[tuple[int, int], list[str]] = {}
    for kind, shape in zip(LINEAR_KINDS, [(h, h)] * 4 + [(h, i), (i, h)], strict=True):
        shapes.setdefault(shape, []).append(kind)
    return shapes


def linear_kernels() -> list[tuple[str, int]]:
    """(kernel id, accuracy level) pairs: every kernel at every level where the level matters."""
    pairs = [(FP32, 0)] + [(int8_dynamic_id(b), 0) for b in NBITS_BITS]
    pairs += [(nbits_id(b, s), a) for b in NBITS_BITS for s in NBITS_BLOCKS for a in ACCURACY_LEVELS]
    return pairs


def _session(model, threads: int, accuracy_level: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(accuracy_level))
    # dozens of sessions live side by side here: spinning worker threads of the one that just ran
    # would steal the cores from the next (measured: 10x slower calls); one model per process, as
    # the runtime runs, spins as onnxruntime defaults
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _time_round(cases: list[dict], calls: int) -> None:
    for case in cases:
        session, feed = case["session"], case["feed"]
        began = time.perf_counter()
        for _ in range(calls):
            session.run(None, feed)
        case["times"].append((time.perf_counter() - began) / calls * 1000)


def _measure(cases: list[dict], repetitions: int, budget_ms: float = 30.0) -> None:
    """Interleaved rounds; calls per case chosen so a case takes ~budget_ms per round."""
    for case in cases:
        case["session"].run(None, case["feed"])  # warm-up (first-call allocations)
        began = time.perf_counter()
        case["session"].run(None, case["feed"])
        case["calls"] = max(1, min(50, int(budget_ms / max((time.perf_counter() - began) * 1000, 1e-3))))
        case["times"] = []
    calls = max(1, min(case["calls"] for case in cases))
    for _ in range(repetitions):
        _time_round(cases, calls)


def _summary(case: dict, fp32_times: list[float]) -> dict:
    times = case["times"]
    ratios = [t / f for t, f in zip(times, fp32_times, strict=True)]
    return {"median_ms": round(statistics.median(times), 4), "min_ms": round(min(times), 4),
            "max_ms": round(max(times), 4), "ratio_to_fp32": round(statistics.median(ratios), 4)}


def measure(preset: str, threads: int, repetitions: int = 7, window_ms: int | None = None,
            chunk_ms: int | None = None, progress: bool = True) -> dict:
    """Time every kernel for ``preset``'s shapes; returns the table (see module doc)."""
    from tqdm import tqdm

    from speechmpq.export.metadata import conv_geometry
    from speechmpq.runtime.model_info import STREAMING_DEFAULTS_MS
    from speechmpq.train.models import build_config

    config = build_config(preset)
    window_ms = window_ms or sum(STREAMING_DEFAULTS_MS.values())
    chunk_ms = chunk_ms or STREAMING_DEFAULTS_MS["chunk"]
    rows = window_frames(config, window_ms)
    rng = np.random.default_rng(0)
    table = {"format": FORMAT, "preset": preset, "threads": threads, "repetitions": repetitions,
             "window_ms": window_ms, "rows": rows, "linear": [], "conv": [], "machine": machine()}
    shapes = linear_shapes(config)
    bar = tqdm(total=len(shapes) + 1, desc=f"kernels {preset}", disable=not progress, unit="shape")
    for (k, n), kinds in shapes.items():
        x = rng.standard_normal((rows, k)).astype(np.float32)
        cases = [{"kernel": kernel, "accuracy_level": level, "feed": {"x": x},
                  "session": _session(linear_model(kernel, k, n), threads, level)}
                 for kernel, level in linear_kernels()]
        _measure(cases, repetitions)
        fp32 = cases[0]["times"]
        table["linear"].append(
            {
                "k": k,
                "n": n,
                "kinds": kinds,
                "per_block": config.num_hidden_layers * len(kinds),
                "kernels": [
                    {"kernel": c["kernel"], "accuracy_level": c["accuracy_level"], **_summary(c, fp32)}
                    for c in cases
                ],
            }
        )
        bar.update()
    stride, field = conv_geometry(config)
    channels_in, lengths = 1, {"window": window_ms * 16, "cached": chunk_ms * 16 + stride + field}
    for index, (out, width, step) in enumerate(
        zip(config.conv_dim, config.conv_kernel, config.conv_stride, strict=True)
    ):
        for name, length in lengths.items():
            x = rng.standard_normal((1, channels_in, length)).astype(np.float32)
            cases = [
                {
                    "kernel": kernel,
                    "accuracy_level": 0,
                    "feed": {"x": x},
                    "session": _session(conv_model(kernel, channels_in, out, width, step), threads, 0),
                }
                for kernel in (FP32, INT8_DYNAMIC)
            ]
            _measure(cases, repetitions)
            table["conv"].append(
                {
                    "layer": index,
                    "input": name,
                    "channels_in": channels_in,
                    "channels_out": out,
                    "width": width,
                    "stride": step,
                    "length": length,
                    "kernels": [{"kernel": c["kernel"], **_summary(c, cases[0]["times"])} for c in cases],
                }
            )
            lengths[name] = (length - width) // step + 1
        channels_in = out
    bar.update()
    bar.close()
    table["best"] = best_by_bits(table)
    return table


def levels_of(entry: dict) -> tuple[int, ...]:
    """Accuracy levels a table entry holds at: the level is a MatMulNBits session option, so an
    nbits entry holds at its own, the other kernels run alike at any level."""
    return (entry["accuracy_level"],) if entry["kernel"].startswith("nbits") else ACCURACY_LEVELS


def level_totals(table: dict) -> dict[int, dict[int, dict[str, float]]]:
    """accuracy level -> stored bits -> kernel -> total ms over the table's model (each shape
    weighted by how many layers have it)."""
    totals: dict[int, dict[int, dict[str, float]]] = {}
    for shape in table["linear"]:
        for entry in shape["kernels"]:
            bits = parse_kernel(entry["kernel"])[1]
            for level in levels_of(entry):
                per = totals.setdefault(level, {}).setdefault(bits, {})
                per[entry["kernel"]] = per.get(entry["kernel"], 0.0) + entry["median_ms"] * shape["per_block"]
    return totals


def best_by_bits(table: dict) -> dict:
    """For each stored bit width: at each accuracy level, the kernel with the least total time over
    the model's layers, and that total in ms."""
    best: dict[str, dict] = {}
    for level, per_bits in sorted(level_totals(table).items()):
        for bits, totals in sorted(per_bits.items()):
            if bits == 32 and level:
                continue
            kernel = min(totals, key=totals.get)
            entry = {"kernel": kernel, "model_ms": round(totals[kernel], 3)}
            best.setdefault(str(bits), {})[str(level)] = entry
    return best


def cpu_isa() -> list[str]:
    """The instruction-set flags that decide onnxruntime's int8 and low-bit kernels on this CPU."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return sorted(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
                  if f" {f}" in text)


def machine() -> dict:
    import onnxruntime

    from speechmpq.runtime.bench import machine_facts

    return {
        "arch": platform.machine(),
        "cpu": machine_facts()["cpu"],
        "cores": os.cpu_count(),
        "isa": cpu_isa(),
        "onnxruntime": onnxruntime.__version__,
        "date": datetime.date.today().isoformat(),
    }


def write(table: dict, out: Path, command: str) -> list[Path]:
    from speechmpq.export.kernel_report import markdown
    from speechmpq.files import atomic_write

    table = {**table, "command": command}
    atomic_write(out, json.dumps(table, indent=1) + "\n")
    md = out.with_suffix(".md")
    atomic_write(md, markdown(table))
    return [out, md]
