"""``speechmpq bench``: latency, memory and WER of several models, side by side, like for like.

Every measurement runs in a fresh child process (``runtime/bench_child.py``; PyTorch model
directories through ``jobs/torch_backend.py``), and repetitions are interleaved (A B C A B C ...)
so that drift of a shared machine hits every model alike. Ratios to the FP32 model are taken per
repetition and reported as median [min, max]. This module imports little on purpose: a child's
``ru_maxrss`` starts from its parent's peak, so the parent stays small (peaks are read from each
child's own ``VmHWM``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from speechmpq.datasets import read_dataset
from speechmpq.errors import SpeechmpqError
from speechmpq.machine import machine_facts
from speechmpq.runtime.kernel_choice import KERNEL_MODES


@dataclass
class BenchConfig:
    # LABEL=PATH or PATH (.onnx file, or a PyTorch model directory for an eager reference row)
    models: list[str]
    # dataset folders or manifests: audio for the latency streams, utterances for WER
    data: list[str]
    # report prefix: writes PREFIX.json, PREFIX.md and PREFIX_*.png
    out: Path
    # intra-op thread counts to measure
    threads: list[int] = field(default_factory=lambda: [1, 2])
    # interleaved repetitions per model and thread count
    repetitions: int = 3
    # streaming chunking (None: each model's metadata)
    chunk_ms: int | None = None
    left_ms: int | None = None
    right_ms: int | None = None
    # seconds of audio streamed per latency measurement (utterances concatenated)
    stream_seconds: float = 30.0
    # utterances timed from end of speech to final result
    end_of_speech_utterances: int = 10
    # WER streaming and offline on every utterance of ``data`` (off for random-weight shapes)
    wer: bool = True
    # also run onnxruntime's profiler per .onnx model: time per operator type per window
    profile: bool = False
    # labels of the reference rows (None: the first model whose metadata says fp32 / mpq / ...)
    fp32: str | None = None
    mpq: str | None = None
    int8: str | None = None
    # labels of the FP32 and int8 peers streamed with the front-end cache: the headline's second set
    # of ratios (MPQ against the peers with the cache too)
    fp32_cached: str | None = None
    int8_cached: str | None = None
    # label -> front-end cache for that row: "auto" (default: on where the model says it is exact),
    # "on" (also approximate group-norm front ends), "off" (recompute the convs every window)
    frontend_cache: dict[str, str] = field(default_factory=dict)
    # label -> how that row's quantized layers run (runtime/kernel_choice.py): auto (default), int8,
    # nbits (as stored) or float
    kernels: dict[str, str] = field(default_factory=dict)
    # label -> DecoderConfig fields for that row (default: greedy), e.g. {"method": "lm", "lm": PATH}
    decoders: dict[str, dict] = field(default_factory=dict)
    # a free-text line for the report (what the models are)
    title: str = ""

    def __post_init__(self):
        if not self.models:
            raise ValueError("bench needs at least one model")
        if not self.threads or min(self.threads) < 1:
            raise ValueError(f"threads must be >= 1, not {self.threads}")
        if self.repetitions < 1 or self.stream_seconds <= 0 or self.end_of_speech_utterances < 1:
            raise ValueError("repetitions, stream_seconds and end_of_speech_utterances must be positive")
        bad = {
            label: value for label, value in self.frontend_cache.items() if value not in ("auto", "on", "off")
        }
        if bad:
            raise ValueError(f"front-end cache must be auto, on or off, not {bad}")
        bad = {label: value for label, value in self.kernels.items() if value not in KERNEL_MODES}
        if bad:
            raise ValueError(f"kernels must be one of {', '.join(KERNEL_MODES)}, not {bad}")


def parse_models(entries: list[str]) -> dict[str, Path]:
    models: dict[str, Path] = {}
    for entry in entries:
        label, _, path = entry.rpartition("=") if "=" in entry else (None, "", entry)
        path = Path(path)
        label = label or (path.stem if path.suffix == ".onnx" else path.name)
        if label in models:
            raise SpeechmpqError(f"two models are labelled {label!r}; use LABEL=PATH")
        if not (path.is_file() and path.suffix == ".onnx") and not (path / "config.json").is_file():
            raise SpeechmpqError(f"{path}: not an .onnx file or a PyTorch model directory")
        models[label] = path
    return models


def _audio(config: BenchConfig) -> tuple[list[str], list[str], list[str]]:
    """(latency stream files, end-of-speech files, WER folders) from the data folders."""
    import soundfile

    utterances = [u for folder in config.data for u in read_dataset(folder)]
    stream, seconds = [], 0.0
    for utterance in utterances:
        if seconds >= config.stream_seconds:
            break
        stream.append(str(utterance.path))
        seconds += soundfile.info(str(utterance.path)).duration
    if seconds < min(config.stream_seconds, 5.0):
        raise SpeechmpqError(f"{config.data}: only {seconds:.1f} s of audio; need >= 5 s")
    eos = [str(u.path) for u in utterances[len(stream): len(stream) + config.end_of_speech_utterances]]
    return stream, eos or stream[:1], [str(d) for d in config.data]


def _child(path: Path, spec: dict) -> dict:
    module = "speechmpq.runtime.bench_child" if path.suffix == ".onnx" else "speechmpq.jobs.torch_backend"
    completed = subprocess.run([sys.executable, "-m", module, json.dumps(spec)], capture_output=True,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": str(spec["threads"])})
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"child exited {completed.returncode}: {tail}"}
    return json.loads(lines[-1])


def _spec(config: BenchConfig, label: str, path: Path, task: str, threads: int, **extra) -> dict:
    """What one child measures: ``task`` for the model labelled ``label``, with the run's chunking."""
    return {"chunk_ms": config.chunk_ms, "left_ms": config.left_ms, "right_ms": config.right_ms,
            "task": task, "model": str(path), "threads": threads,
            "frontend_cache": config.frontend_cache.get(label, "auto"),
            "kernels": config.kernels.get(label, "auto"), **extra}


def _measure(label: str, path: Path, spec: dict) -> dict:
    """One child's result; a child that failed stops the benchmark with the model's label."""
    result = _child(path, spec)
    if "error" in result:
        raise SpeechmpqError(f"{label}: {result['error']}")
    return result


def run_bench(config: BenchConfig, progress: bool = True) -> dict:
    from tqdm import tqdm

    models = parse_models(config.models)
    for flag, given in (("--frontend-cache", config.frontend_cache), ("--lm", config.decoders),
                        ("--kernels", config.kernels)):
        unknown = sorted(set(given) - set(models))
        if unknown:
            raise SpeechmpqError(f"{flag} names no model labelled {unknown[0]!r} (have {sorted(models)})")
    stream_files, eos_files, data = _audio(config)
    runs: dict[str, dict[int, list[dict]]] = {label: {t: [] for t in config.threads} for label in models}
    onnx_models = {label: path for label, path in models.items() if path.suffix == ".onnx"}
    total = (config.repetitions * len(config.threads) * len(models) + config.wer * len(models)
             + config.profile * len(onnx_models))
    bar = tqdm(total=total, desc="bench", unit="run", disable=not progress)
    for repetition in range(config.repetitions):
        for threads in config.threads:
            for label, path in models.items():  # interleaved: every model once per round
                bar.set_postfix_str(f"{label} x{threads} #{repetition + 1}")
                spec = _spec(config, label, path, "latency", threads, decoder=config.decoders.get(label, {}),
                             stream_audio=stream_files, eos_audio=eos_files)
                runs[label][threads].append(_measure(label, path, spec))
                bar.update()
    wer = {}
    for label, path in models.items() if config.wer else ():
        bar.set_postfix_str(f"{label} WER")
        spec = _spec(config, label, path, "wer", max(config.threads),
                     decoder=config.decoders.get(label, {}), data=data)
        wer[label] = _measure(label, path, spec)
        bar.update()
    profiles = {}
    for label, path in onnx_models.items() if config.profile else ():
        bar.set_postfix_str(f"{label} profile")
        threads = 2 if 2 in config.threads else max(config.threads)
        profiles[label] = _measure(label, path, _spec(config, label, path, "profile", threads,
                                                      stream_audio=stream_files))
        bar.update()
    bar.close()
    from speechmpq.runtime.bench_report import summarize

    report = summarize(config, models, runs, wer, machine_facts(), len(stream_files), len(eos_files))
    report["profile"] = profiles
    return report


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
