"""One benchmark measurement in a fresh process: ``python -m speechmpq.runtime.bench_child SPEC``.

SPEC is a JSON object; the result is one JSON line on stdout. The parent (``speechmpq bench``)
starts one child per model and repetition, so no model's allocations or warm caches leak into
another's figures.

Tasks:
- ``latency``: load the model (timed; RSS before and after), warm up, stream ``stream_audio`` chunk by
  chunk (each ``decode`` that decodes one chunk is one latency sample), then for each of
  ``eos_audio`` time ``input_finished`` + final ``decode`` (end of speech -> final result).
- ``wer``: transcribe every utterance of ``data`` streaming and offline; returns the hypotheses.
- ``profile``: onnxruntime's profiler over a few full windows; milliseconds per operator type.

Peak memory is the child's own ``VmHWM`` (high-water RSS of this process image). ``ru_maxrss`` is
reported beside it as a cross-check: on Linux it carries over the parent's peak across fork/exec,
which is why the parent keeps its own footprint small.
"""

from __future__ import annotations

import json
import sys
import time

from speechmpq.runtime.memory import process_memory


def _recognizer(spec: dict, backend=None, offline: bool = False):
    from speechmpq.runtime.decoding import DecoderConfig
    from speechmpq.runtime.recognizer import Recognizer, RecognizerConfig, StreamingConfig
    from speechmpq.runtime.session import SessionConfig

    streaming = (StreamingConfig(chunk_ms=0) if offline else
                 StreamingConfig(spec.get("chunk_ms"), spec.get("left_ms"), spec.get("right_ms"),
                                 frontend_cache=spec.get("frontend_cache", "auto")))
    session = SessionConfig(threads=spec["threads"], accuracy_level=spec.get("accuracy_level"),
                            arena=spec.get("arena", True), profile_prefix=spec.get("profile_prefix"),
                            kernels=spec.get("kernels", "auto"))
    config = RecognizerConfig(session=session, streaming=streaming,
                              decoder=DecoderConfig(**spec.get("decoder", {})))
    return Recognizer(backend if backend is not None else spec["model"], config)


def measure_latency(spec: dict, make_backend=None) -> dict:
    import numpy as np

    from speechmpq.audio import load_audio

    stream_audio = np.concatenate([load_audio(p) for p in spec["stream_audio"]])
    eos_audio = [load_audio(p) for p in spec["eos_audio"]]
    before = process_memory()
    started = time.perf_counter()
    recognizer = _recognizer(spec, make_backend() if make_backend else None)
    load_seconds = time.perf_counter() - started
    after_load = process_memory()
    rate, chunk = recognizer.info.sample_rate, recognizer.geometry.chunk

    def stream_through(samples: np.ndarray, record: list | None) -> float:
        stream = recognizer.create_stream()
        for position in range(0, samples.size, chunk):
            stream.accept_waveform(samples[position: position + chunk], rate)
            began = time.perf_counter()
            calls = recognizer.decode(stream)
            if record is not None and calls == 1:
                record.append(time.perf_counter() - began)
        stream.input_finished()
        began = time.perf_counter()
        recognizer.decode(stream)
        return time.perf_counter() - began

    for _ in range(spec.get("warmup", 1)):
        stream_through(stream_audio[: rate * 5], None)
    chunk_seconds: list[float] = []
    stream_through(stream_audio, chunk_seconds)
    eos_seconds = [stream_through(samples, None) for samples in eos_audio]
    return {"task": "latency", "load_seconds": load_seconds, "memory_before_load": before,
            "memory_after_load": after_load, "memory_end": process_memory(),
            "chunk_seconds": chunk_seconds, "stream_audio_seconds": stream_audio.size / rate,
            "rtf": sum(chunk_seconds) / (len(chunk_seconds) * chunk / rate) if chunk_seconds else None,
            "end_of_speech_seconds": eos_seconds, **_model_facts(recognizer)}


def _model_facts(recognizer) -> dict:
    info, model = recognizer.info, recognizer.model
    return {"weights": info.weights, "accuracy_level": getattr(model, "accuracy_level", None),
            "chunk_ms": 1000 * recognizer.geometry.chunk // info.sample_rate,
            "left_ms": 1000 * recognizer.geometry.left // info.sample_rate,
            "right_ms": 1000 * recognizer.geometry.right // info.sample_rate,
            "frontend_cache": bool(getattr(recognizer, "frontend_cache", False)),
            "decoder": recognizer.config.decoder.method,
            "kernels": model.kernels.summary() if hasattr(model, "kernels") else None}


def measure_wer(spec: dict, make_backend=None) -> dict:
    from speechmpq.audio import load_audio
    from speechmpq.datasets import read_dataset

    utterances = [u for folder in spec["data"] for u in read_dataset(folder)]
    streaming = _recognizer(spec, make_backend() if make_backend else None)
    offline = _recognizer(spec, streaming.model, offline=True)
    out = {"task": "wer", "ids": [], "references": [], "streaming": [], "offline": []}
    for utterance in utterances:
        samples = load_audio(utterance.path, streaming.info.sample_rate)
        out["ids"].append(utterance.utt_id)
        out["references"].append(utterance.transcript)
        out["streaming"].append(streaming.transcribe(samples, streaming.info.sample_rate))
        out["offline"].append(offline.transcribe(samples, offline.info.sample_rate))
    return {**out, **_model_facts(streaming), "memory_end": process_memory()}


def measure_profile(spec: dict, make_backend=None) -> dict:
    """onnxruntime's own profile of a steady-state stream: milliseconds per model call (one chunk's
    window, through the front-end cache where the row uses it) by operator type, after fusion (so
    ``MatMulNBits`` and ``DynamicQuantizeMatMul`` show as themselves); the first call is left out."""
    import os
    import shutil
    import tempfile

    import numpy as np

    from speechmpq.audio import load_audio

    folder = tempfile.mkdtemp(prefix="speechmpq-profile-")
    recognizer = _recognizer({**spec, "profile_prefix": os.path.join(folder, "ort")})
    model, g = recognizer.model, recognizer.geometry
    window_ms = 1000 * (g.left + g.chunk + g.right) // model.info.sample_rate
    samples = np.concatenate([load_audio(p) for p in spec["stream_audio"]])
    samples = samples[: g.left + g.chunk * (spec.get("windows", 8) + 1) + g.right]
    stream = recognizer.create_stream()
    for position in range(0, samples.size, g.chunk):
        stream.accept_waveform(samples[position: position + g.chunk], model.info.sample_rate)
        recognizer.decode(stream)
    path = model.session.end_profiling()
    with open(path) as handle:
        events = json.load(handle)
    shutil.rmtree(folder)  # also a profile of the first session, if the model asked for a reload
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    if len(runs) < 2:
        raise RuntimeError("the profile saw fewer than two model calls")
    steady = runs[1]["ts"]
    by_op: dict[str, float] = {}
    for event in events:
        kernel = event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time")
        if kernel and event["ts"] >= steady:
            op = event.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + event["dur"] / 1000
    scale = 1.0 / (len(runs) - 1)
    return {
        "task": "profile",
        "window_ms": window_ms,
        "windows": len(runs) - 1,
        "frontend_cache": bool(recognizer.frontend_cache),
        "run_ms": sum(e["dur"] for e in runs[1:]) / 1000 * scale,
        "op_ms": {k: v * scale for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
    }


def run_bench_child(spec: dict, make_backend=None) -> None:
    """Measure ``spec`` and print the result as one JSON line (errors too, as ``{"error": ...}``)."""
    try:
        task = {"latency": measure_latency, "wer": measure_wer, "profile": measure_profile}[spec["task"]]
        result = task(spec, make_backend)
    except Exception as error:  # reported to the parent, which prints it next to the model's name
        result = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    run_bench_child(json.loads(sys.argv[1]))
