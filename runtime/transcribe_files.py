"""``speechmpq stream``: feed audio files to a Recognizer piece by piece, as a microphone would.

Partial results go to stderr as they change (redrawn in place on a terminal: stable text plain,
tentative tail dimmed), final transcripts to stdout, one line per file.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from speechmpq.audio import iter_audio
from speechmpq.errors import SpeechmpqError
from speechmpq.runtime.recognizer import Recognizer, RecognizerConfig

DIM, RESET, CLEAR_LINE = "\033[2m", "\033[0m", "\r\033[K"


def _show_partial(stable: str, tentative: str, terminal: bool) -> None:
    if terminal:
        width = 200
        text = (stable + DIM + tentative + RESET) if tentative else stable
        sys.stderr.write(CLEAR_LINE + text[-width:])
    else:
        sys.stderr.write(f"partial: {stable}" + (f" [{tentative.strip()}]" if tentative else "") + "\n")
    sys.stderr.flush()


def file_pieces(path, rate: int, feed_ms: int):
    """The file as ``feed_ms`` pieces at ``rate``, read block by block (a microphone's view of it)."""
    size, pending = max(1, rate * feed_ms // 1000), np.zeros(0, np.float32)
    for block in iter_audio(path, rate):
        pending = np.concatenate([pending, block])
        while pending.size >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending.size:
        yield pending


def stream_file(recognizer: Recognizer, path: str, feed_ms: int = 100, realtime: bool = False,
                quiet: bool = False) -> dict:
    """Stream one file; returns its final text and timings."""
    rate = recognizer.info.sample_rate
    terminal = sys.stderr.isatty()
    stream, shown = recognizer.create_stream(), None
    started, position = time.perf_counter(), 0
    for samples in file_pieces(path, rate, feed_ms):  # bounded memory, whatever the file's length
        if realtime:
            time.sleep(max(0.0, started + position / rate - time.perf_counter()))
        position += samples.size
        stream.accept_waveform(samples, rate)
        if recognizer.decode(stream) and not quiet:
            result = stream.result
            if (result.stable, result.tentative) != shown and result.text:
                shown = (result.stable, result.tentative)
                _show_partial(result.stable, result.tentative, terminal)
    stream.input_finished()
    finished = time.perf_counter()
    recognizer.decode(stream)
    end_latency = time.perf_counter() - finished
    if terminal and shown and not quiet:
        sys.stderr.write(CLEAR_LINE)
    compute = np.array(stream.compute_seconds) if stream.compute_seconds else np.zeros(1)
    return {"path": str(path), "text": stream.result.text, "audio_seconds": position / rate,
            "chunks": len(stream.compute_seconds), "chunk_ms_p50": 1000 * float(np.median(compute)),
            "chunk_ms_max": 1000 * float(compute.max()),
            "rtf": float(compute.sum()) / max(position / rate, 1e-9),
            "end_of_speech_ms": 1000 * end_latency}


def stream_files(model: str, paths: list[str], config: RecognizerConfig, feed_ms: int = 100,
                 realtime: bool = False, quiet: bool = False, verbose: bool = False) -> int:
    if feed_ms <= 0:
        raise SpeechmpqError(f"--feed-ms must be > 0, not {feed_ms}")
    recognizer = Recognizer(model, config)
    for warning in recognizer.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    geometry, rate = recognizer.geometry, recognizer.info.sample_rate
    if not quiet:
        mode = ("offline" if recognizer.offline else
                f"chunk {1000 * geometry.chunk // rate} ms, left {1000 * geometry.left // rate} ms, "
                f"right {1000 * geometry.right // rate} ms")
        print(f"{model}: {recognizer.info.weights} weights, {mode}, {config.decoder.method} decoding; "
              f"{recognizer.frontend_cache_note}", file=sys.stderr)
    kernels = getattr(recognizer.model, "kernels", None)
    if verbose and kernels is not None:
        print(kernels.summary(), file=sys.stderr)
        if kernels.layers:
            print(kernels.table(), file=sys.stderr)
    failures = 0
    for path in paths:
        try:
            figures = stream_file(recognizer, path, feed_ms, realtime, quiet)
        except SpeechmpqError as error:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
            continue
        print(figures["text"] if len(paths) == 1 else f"{path}: {figures['text']}", flush=True)
        if not quiet:
            print(f"  {figures['audio_seconds']:.2f} s audio, {figures['chunks']} chunks, per chunk "
                  f"p50 {figures['chunk_ms_p50']:.1f} ms max {figures['chunk_ms_max']:.1f} ms, "
                  f"RTF {figures['rtf']:.3f}, end of speech -> final {figures['end_of_speech_ms']:.1f} ms",
                  file=sys.stderr)
    return 1 if failures else 0
