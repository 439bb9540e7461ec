"""``speechmpq kernels``: the latency of every way stock onnxruntime runs a weight, on this machine.

For each distinct linear shape (K, N) of a preset's searched layers, at the row count of the
recommended streaming window, and for each conv layer of its front end (at the window's length and at
the length the front-end cache leaves), one small model per kernel (``speechmpq/kernel_graphs.py``) is
timed in this process: sessions built once, then repetitions interleaved (every kernel of a shape once
per round, rounds repeated) so drift hits all alike; each figure is the median over rounds of the mean
of a few calls, with its min and max, and its ratio to fp32 from the same round. Worker threads do
not spin between calls here (many sessions share the cores), so absolute figures are a little
above a lone session's; the ranking is what the kernel map uses.

The JSON is what ``export --kernel-table`` reads; the markdown beside it is for people.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from speechmpq.bitplan import SEARCHED_LINEAR_KINDS
from speechmpq.kernel_graphs import conv_model, linear_model
from speechmpq.kernel_table import (
    ACCURACY_LEVELS,
    FORMAT,
    FP32,
    INT8_DYNAMIC,
    NBITS_BITS,
    NBITS_BLOCKS,
    best_by_bits,
    int8_dynamic_id,
    nbits_id,
)
from speechmpq.machine import kernel_machine


def window_frames(config, window_ms: int) -> int:
    from speechmpq.onnx_metadata import conv_geometry

    stride, field = conv_geometry(config)
    return (window_ms * 16 - field) // stride + 1


def linear_shapes(config) -> dict[tuple[int, int], list[str]]:
    """(K, N) -> the matrix kinds of that shape in every transformer block."""
    h, i = config.hidden_size, config.intermediate_size
    shapes: dict[tuple[int, int], list[str]] = {}
    # in SEARCHED_LINEAR_KINDS order: q, k, v, out (h -> h), intermediate (h -> i), output (i -> h)
    for kind, shape in zip(SEARCHED_LINEAR_KINDS, [(h, h)] * 4 + [(h, i), (i, h)], strict=True):
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


def measure_kernels(preset: str, threads: int, repetitions: int = 7, window_ms: int | None = None,
                    chunk_ms: int | None = None, progress: bool = True) -> dict:
    """Time every kernel for ``preset``'s shapes; returns the table (see module doc)."""
    from tqdm import tqdm

    from speechmpq.onnx_metadata import STREAMING_DEFAULTS_MS, conv_geometry
    from speechmpq.train.models import build_config

    config = build_config(preset)
    window_ms = window_ms or sum(STREAMING_DEFAULTS_MS.values())
    chunk_ms = chunk_ms or STREAMING_DEFAULTS_MS["chunk"]
    rows = window_frames(config, window_ms)
    rng = np.random.default_rng(0)
    table = {"format": FORMAT, "preset": preset, "threads": threads, "repetitions": repetitions,
             "window_ms": window_ms, "rows": rows, "linear": [], "conv": [], "machine": kernel_machine()}
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


def write_kernel_table(table: dict, out: Path, command: str) -> list[Path]:
    """Write ``table`` (with the ``command`` that made it) as ``out`` (JSON) and the markdown beside it."""
    from speechmpq.export.kernel_report import markdown
    from speechmpq.files import atomic_write

    table = {**table, "command": command}
    atomic_write(out, json.dumps(table, indent=1) + "\n")
    md = out.with_suffix(".md")
    atomic_write(md, markdown(table))
    return [out, md]
