"""Soak test: hours of audio through one stream and through N concurrent streams on one recognizer.

    python experiments/soak.py --model models/demo-mpq.onnx --data data/synth/test-clean \
        --minutes 60 --streams 1 4 --compare-allocator --out results/soak

Audio is the dataset's utterances one after another (cycled until ``--minutes``), each followed by
1.5 s of silence, read from disk as needed (the soak itself holds no more than one utterance per
stream). Each stream is fed 100 ms pieces as fast as the model goes (or, with --realtime, at the
pace of real audio, so that minutes of audio are minutes of the process's life), decoded after every piece,
and reset at every endpoint (the way a device runs for hours: one segment per utterance). Measured:
process RSS every minute of audio (growth after the first ``--warmup-minutes``), per-chunk latency
by the audio time it was taken at (p99 of the first vs the last 10 minutes), and the transcript:
WER of all the segments against all the references (the same as the per-utterance streaming WER
when nothing was lost or duplicated), the number of segments vs utterances. Each stream count runs
in a fresh process, with glibc's mmap threshold pinned the way `speechmpq serve` and `speechmpq demo
--mic` pin it (runtime/memory.py; --glibc-default leaves it, --compare-allocator adds a run that
does). Writes OUT.json, OUT.md and OUT.png (RSS and p99 over time); exits 1 when a criterion fails.
"""

from __future__ import annotations

import argparse
import array
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechmpq.runtime import process_memory

PIECE_SECONDS = 0.1
GAP_SECONDS = 1.5
LIMITS = {"rss_growth": 0.05, "p99_drift": 0.20}


@dataclass
class StreamLog:
    # per chunk: audio seconds when it was taken, and its ms (flat arrays: the harness itself must not
    # grow by a Python object per chunk, or it would show up in the RSS it measures)
    chunk_at: array.array = field(default_factory=lambda: array.array("d"))
    chunk_ms: array.array = field(default_factory=lambda: array.array("d"))
    segments: list = field(default_factory=list)
    references: list = field(default_factory=list)
    audio_seconds: float = 0.0
    error: str | None = None


def _feed(recognizer, utterances, minutes: float, offset: int, log: StreamLog,
          realtime: bool = False) -> None:
    from speechmpq.audio import load_audio

    rate = recognizer.info.sample_rate
    piece = int(rate * PIECE_SECONDS)
    gap = np.zeros(int(rate * GAP_SECONDS), np.float32)
    stream = recognizer.create_stream()
    started = time.perf_counter()
    index = offset
    try:
        while log.audio_seconds < minutes * 60:
            utterance = utterances[index % len(utterances)]
            index += 1
            samples = np.concatenate([load_audio(utterance.path, rate), gap])
            log.references.append(utterance.transcript)
            for start in range(0, samples.size, piece):
                part = samples[start: start + piece]
                stream.accept_waveform(part, rate)
                log.audio_seconds += part.size / rate
                if realtime:  # as a microphone delivers it: no piece before its time
                    time.sleep(max(0.0, log.audio_seconds - (time.perf_counter() - started)))
                calls = recognizer.decode(stream)
                if calls:
                    for seconds in list(stream.compute_seconds)[-calls:]:
                        log.chunk_at.append(log.audio_seconds)
                        log.chunk_ms.append(1000 * seconds)
                    # at an endpoint the segment is its committed text: the tentative tail comes
                    # from look-ahead frames past the silence (the next utterance may start there),
                    # which the next segment decodes again
                    if stream.is_endpoint and stream.result.stable.strip():
                        log.segments.append(stream.result.stable)
                        stream.reset()
        stream.input_finished()
        recognizer.decode(stream)
        if stream.result.text.strip():
            log.segments.append(stream.result.text)
    except Exception as error:  # noqa: BLE001 - reported, the soak fails
        log.error = f"{type(error).__name__}: {error}"


def run_soak(model: str, data: list[str], minutes: float, streams: int, threads: int = 0,
             warmup_minutes: float = 5.0, progress: bool = True, arena: bool = True,
             steady: bool = True, realtime: bool = False) -> dict:
    import os

    from tqdm import tqdm

    from speechmpq.datasets import read_dataset
    from speechmpq.runtime import Recognizer, RecognizerConfig, SessionConfig, steady_allocator
    from speechmpq.scoring import score_pairs

    # what `speechmpq serve` and `speechmpq demo --mic` do (or the user's own MALLOC_MMAP_THRESHOLD_)
    steady = (steady_allocator() if steady else False) or bool(os.environ.get("MALLOC_MMAP_THRESHOLD_"))
    utterances = [u for location in data for u in read_dataset(location)]
    recognizer = Recognizer(model, RecognizerConfig(session=SessionConfig(threads=threads, arena=arena)))
    logs = [StreamLog() for _ in range(streams)]
    workers = [threading.Thread(target=_feed, args=(recognizer, utterances, minutes, 97 * i, log, realtime),
                                daemon=True) for i, log in enumerate(logs)]
    rss = []  # (audio minutes of the slowest stream, MiB)
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    bar = tqdm(total=int(minutes), desc=f"soak x{streams}", unit="audio min", disable=not progress)
    shown = 0
    while any(worker.is_alive() for worker in workers):
        time.sleep(0.5)
        done = min(log.audio_seconds for log in logs) / 60
        if done >= len(rss):
            rss.append((done, process_memory()["rss_mib"]))
        bar.update(max(0, min(int(done), int(minutes)) - shown))
        shown = max(shown, min(int(done), int(minutes)))
    bar.close()
    wall = time.perf_counter() - started
    rss.append((min(log.audio_seconds for log in logs) / 60, process_memory()["rss_mib"]))
    after_warmup = [mib for at, mib in rss if at >= warmup_minutes] or [rss[-1][1]]
    baseline = after_warmup[0]
    result = {"model": str(model), "streams": streams, "minutes": minutes, "threads": threads, "arena": arena,
              "allocator": "fixed mmap threshold" if steady else "glibc default", "realtime": realtime,
              "wall_seconds": wall, "rss_mib": rss, "rss_baseline_mib": baseline,
              "rss_max_after_warmup_mib": max(after_warmup),
              "rss_growth": max(after_warmup) / baseline - 1, "rss_end_growth": rss[-1][1] / baseline - 1,
              "per_stream": []}
    for log in logs:
        times = np.stack([np.frombuffer(log.chunk_at), np.frombuffer(log.chunk_ms)], axis=1) \
            if len(log.chunk_ms) else np.zeros((0, 2))
        first = times[times[:, 0] <= 600, 1] if times.size else np.zeros(0)
        last = times[times[:, 0] >= log.audio_seconds - 600, 1] if times.size else np.zeros(0)
        p99_first = float(np.percentile(first, 99)) if first.size else float("nan")
        p99_last = float(np.percentile(last, 99)) if last.size else float("nan")
        hypothesis, reference = " ".join(log.segments), " ".join(log.references)
        wer = score_pairs(["all"], [reference], [hypothesis])["wer"] if reference else float("nan")
        windows = []  # (audio minute the window starts at, p99 ms) per 5 minutes of audio
        for start in range(0, int(log.audio_seconds) - 299, 300) if times.size else ():
            inside = times[(times[:, 0] >= start) & (times[:, 0] < start + 300), 1]
            windows.append((start / 60, float(np.percentile(inside, 99))))
        result["per_stream"].append({"p99_per_5min": windows,
            "audio_seconds": log.audio_seconds, "chunks": int(times.shape[0]),
            "utterances": len(log.references), "segments": len(log.segments), "wer": wer,
            "p50_ms": float(np.median(times[:, 1])) if times.size else float("nan"),
            "p99_first_10min_ms": p99_first, "p99_last_10min_ms": p99_last,
            "p99_drift": p99_last / p99_first - 1 if first.size and last.size else None, "error": log.error})
    result["passed"] = bool(result["rss_growth"] < LIMITS["rss_growth"] and all(
        s["error"] is None and s["segments"] > 0 and s["p99_drift"] is not None
        and abs(s["p99_drift"]) <= LIMITS["p99_drift"] for s in result["per_stream"]))
    return result


def _run_in_fresh_process(*args) -> dict:
    """run_soak in a new interpreter, so that one count's memory does not start the next one's."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_soak, *args).result()


def plot(results: list[dict], path: Path) -> Path | None:
    """RSS and the per-chunk p99 (5-minute windows) against audio time; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from speechmpq.files import atomic_output

    figure, (memory, latency) = plt.subplots(1, 2, figsize=(11, 4))
    for result in results:
        label = f"{result['streams']} stream{'s' if result['streams'] > 1 else ''}, {result['allocator']}"
        at, mib = zip(*result["rss_mib"], strict=True)
        memory.plot(at, mib, label=label)
        for index, stream in enumerate(result["per_stream"]):
            if stream["p99_per_5min"]:
                starts, p99 = zip(*stream["p99_per_5min"], strict=True)
                latency.plot(starts, p99, marker=".", label=label if index == 0 else None,
                             color=memory.lines[-1].get_color(), alpha=0.8)
    memory.set_xlabel("audio minutes (slowest stream)")
    memory.set_ylabel("process RSS, MiB")
    memory.set_title("memory over the soak")
    memory.legend(fontsize=8)
    latency.set_xlabel("audio minute (start of a 5-minute window)")
    latency.set_ylabel("per-chunk latency p99, ms")
    latency.set_title("latency p99 per 5 minutes, every stream")
    latency.legend(fontsize=8)
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return path


def markdown(results: list[dict], command: str, machine: str) -> str:
    lines = ["# Soak: hours of audio through the streaming runtime", "", f"Command: `{command}`  ",
             f"Machine: {machine}. Date: {time.strftime('%Y-%m-%d')}.", "",
             "Criteria: RSS growth after warm-up < 5 %; per-chunk latency p99 of the last 10 minutes of "
             "audio within 20 % of the first 10 minutes; the transcript complete (every utterance gives "
             "a segment, WER of all segments against all references as in the per-utterance figures).",
             "RSS is sampled once per audio minute; 'start' is the first sample after the warm-up, the "
             "verdict uses the highest sample after it, 'end' is the last sample.",
             "", "| streams | allocator | audio per stream | wall | RSS start → max after warm-up (growth) "
             "| RSS end | stream | chunks | p50 ms | p99 first 10 min | p99 last 10 min (drift) "
             "| utterances / segments | WER % | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        for index, stream in enumerate(result["per_stream"]):
            head = " | | | | | "
            if index == 0:
                head = (f"{result['streams']} | {result.get('allocator', '')} | "
                        f"{stream['audio_seconds'] / 60:.1f} min | "
                        f"{result['wall_seconds'] / 60:.1f} min | {result['rss_baseline_mib']:.0f} → "
                        f"{result['rss_max_after_warmup_mib']:.0f} MiB "
                        f"({100 * result['rss_growth']:+.1f} %) | "
                        f"{result['rss_mib'][-1][1]:.0f} MiB ({100 * result['rss_end_growth']:+.1f} %)")
            drift = f"{100 * stream['p99_drift']:+.1f} %" if stream["p99_drift"] is not None else "—"
            verdict = ("PASS" if result["passed"] else "FAIL") if index == 0 else ""
            error = f" error: {stream['error']}" if stream["error"] else ""
            first, last = stream["p99_first_10min_ms"], stream["p99_last_10min_ms"]
            lines.append(f"| {head} | {index + 1} | {stream['chunks']} | {stream['p50_ms']:.1f} | "
                         f"{first:.1f} | {last:.1f} ({drift}) | "
                         f"{stream['utterances']} / {stream['segments']} | {100 * stream['wer']:.2f} | "
                         f"{verdict} |{error}")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python experiments/soak.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--minutes", type=float, default=60.0, help="audio per stream")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4], help="one run per count")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads")
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument("--glibc-default", dest="steady", action="store_false",
                        help="leave glibc's dynamic mmap threshold (see runtime/memory.py)")
    parser.add_argument("--realtime", action="store_true",
                        help="feed each stream at the pace of real audio (an hour takes an hour)")
    parser.add_argument("--compare-allocator", action="store_true",
                        help="then run the largest stream count again with glibc's default, for comparison")
    parser.add_argument("--no-arena", dest="arena", action="store_false",
                        help="turn off onnxruntime's CPU memory arena (see SessionConfig.arena)")
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    from speechmpq.errors import SpeechmpqError
    from speechmpq.files import atomic_write
    from speechmpq.machine import machine_facts

    try:
        results = [_run_in_fresh_process(args.model, args.data, args.minutes, count, args.threads,
                                         args.warmup_minutes, not args.quiet, args.arena, args.steady,
                                         args.realtime)
                   for count in args.streams]
        if args.compare_allocator and args.steady:
            results.append(_run_in_fresh_process(
                args.model, args.data, args.minutes, max(args.streams), args.threads, args.warmup_minutes,
                not args.quiet, args.arena, False, args.realtime))
    except (SpeechmpqError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    facts = machine_facts()
    machine = f"{facts['cpu']}, {facts['cores']} cores, onnxruntime {facts['versions']['onnxruntime']}"
    command = "python experiments/soak.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = markdown(results, command, machine)
    print(text)
    picture = plot(results, args.out.with_name(args.out.name + ".png")) if args.out else None
    if picture:
        text += f"\n![RSS and p99 latency over the soak]({picture.name})\n"
    if args.out:
        atomic_write(args.out.with_suffix(".json"), json.dumps({"command": command, "machine": machine,
                                                                "results": results}, indent=1) + "\n")
        atomic_write(args.out.with_suffix(".md"), text)
    return 0 if all(result["passed"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
