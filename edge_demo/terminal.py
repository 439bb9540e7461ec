"""``speechmpq demo``: live streaming transcription in a terminal (numpy + onnxruntime only).

Audio files are fed piece by piece (at their own pace with ``--realtime``, else as fast as the
model goes); the microphone (optional ``sounddevice`` package) is read until Ctrl-C. On a terminal
the partial transcript is redrawn in place — the stable prefix plain, the tentative tail (decoded
from look-ahead frames, may still change) dimmed — with a live line of per-chunk latency, real-time
factor and peak memory under it. Final transcripts go to stdout, everything else to stderr, so
``speechmpq demo a.wav > a.txt`` keeps just the text.
"""

from __future__ import annotations

import os
import queue
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechmpq.errors import SpeechmpqError
from speechmpq.runtime import Recognizer, RecognizerConfig, Stream, process_memory, steady_allocator

BOLD, DIM, RESET, CLEAR = "\033[1m", "\033[2m", "\033[0m", "\033[K"
UP = "\033[1A"
PACKAGE = Path(__file__).resolve().parent


# The demo's model: Whisper base's encoder with a CTC head, its encoder's linear layers at 4 bits
# (round to nearest, blocks of 128: the lowest stored bits lossless on real-speech dev,
# results/frontier_whisper-base.md; card: models/whisper-base-ctc-4bit.md). It recommends the general
# English LM models/en-us.lm.npz (speechmpq lm --from-pocketsphinx), greedy without it.
DEMO_MODEL = "whisper-base-ctc-4bit.onnx"


def default_model() -> Path:
    """``models/DEMO_MODEL`` in the working directory, else in the checkout this package is in."""
    for candidate in (Path("models") / DEMO_MODEL, PACKAGE.parent / "models" / DEMO_MODEL):
        if candidate.is_file():
            return candidate
    raise SpeechmpqError(f"no --model given and models/{DEMO_MODEL} not found here; pass --model FILE.onnx")


def sample_clips() -> list[Path]:
    return sorted((PACKAGE / "clips").glob("*.flac"))


@dataclass
class Meter:
    """Per-chunk compute times, audio seconds and peak memory of one run."""

    audio_seconds: float = 0.0
    chunks: list[float] = field(default_factory=list)

    def add(self, stream: Stream, calls: int) -> None:
        if calls:
            self.chunks.extend(list(stream.compute_seconds)[-calls:])

    def line(self) -> str:
        last = 1000 * self.chunks[-1] if self.chunks else 0.0
        rtf = sum(self.chunks) / self.audio_seconds if self.audio_seconds else 0.0
        return (f"chunk {len(self.chunks)}: {last:.1f} ms · RTF {rtf:.3f} · "
                f"audio {self.audio_seconds:.1f} s · peak RSS {process_memory()['hwm_mib']:.0f} MiB")

    def summary(self) -> str:
        times = 1000 * np.array(self.chunks or [0.0])
        rtf = sum(self.chunks) / self.audio_seconds if self.audio_seconds else 0.0
        return (f"{self.audio_seconds:.2f} s audio · {len(self.chunks)} chunks · per chunk p50 "
                f"{np.median(times):.1f} ms, max {times.max():.1f} ms · RTF {rtf:.3f} · peak RSS "
                f"{process_memory()['hwm_mib']:.0f} MiB")


class LiveView:
    """Two lines redrawn in place on a terminal (transcript, stats); plain lines otherwise."""

    def __init__(self, out=None, terminal: bool | None = None):
        self.out = out or sys.stderr
        self.terminal = self.out.isatty() if terminal is None else terminal
        self._drawn = False
        self._last = None

    def update(self, stable: str, tentative: str, stats: str) -> None:
        if self.terminal:
            width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
            text = stable + tentative
            if len(text) > width:  # keep the newest words visible
                cut = len(text) - width + 1
                stable, tentative = ("…" + stable[cut:], tentative) if cut < len(stable) else \
                    ("…", tentative[cut - len(stable):])
            line = f"{BOLD}{stable}{RESET}{DIM}{tentative}{RESET}"
            self.out.write((UP + "\r" if self._drawn else "") + f"\r{line}{CLEAR}\n{DIM}{stats[:width]}"
                           f"{RESET}{CLEAR}")
            self._drawn = True
        elif (stable, tentative) != self._last:
            self.out.write(f"partial: {stable}" + (f" [{tentative.strip()}]" if tentative.strip() else "")
                           + f"  ({stats})\n")
        self._last = (stable, tentative)
        self.out.flush()

    def clear(self) -> None:
        if self.terminal and self._drawn:
            self.out.write(f"\r{CLEAR}{UP}\r{CLEAR}")
            self.out.flush()
        self._drawn, self._last = False, None


def _header(recognizer: Recognizer, model: Path) -> str:
    info, g, rate = recognizer.info, recognizer.geometry, recognizer.info.sample_rate
    bits = (f", {info.bitplan['average_bits']:.2f} bits/weight over {len(info.bitplan['layers'])} layers"
            if info.bitplan else "")
    mode = ("offline" if recognizer.offline else
            f"chunk {1000 * g.chunk // rate} ms, left {1000 * g.left // rate} ms, "
            f"look-ahead {1000 * g.right // rate} ms")
    return (f"{model.name}: {info.weights}{bits}, {os.path.getsize(model) / 1e6:.2f} MB; {mode}; "
            f"{recognizer.decoder.describe()}. Stable text bold, tentative dim.")


def _feed(recognizer: Recognizer, stream: Stream, samples: np.ndarray, meter: Meter, view: LiveView) -> int:
    """Hand samples (at the model's rate) to the stream, decode what is ready, redraw; model calls."""
    stream.accept_waveform(samples, recognizer.info.sample_rate)
    meter.audio_seconds += samples.size / recognizer.info.sample_rate
    calls = recognizer.decode(stream)
    meter.add(stream, calls)
    if calls:
        result = stream.result
        view.update(result.stable, result.tentative, meter.line())
    return calls


def run_file(recognizer: Recognizer, path: str | Path, view: LiveView, realtime: bool = False,
             feed_ms: int = 100) -> tuple[str, Meter]:
    from speechmpq.runtime import file_pieces

    rate = recognizer.info.sample_rate
    stream, meter = recognizer.create_stream(), Meter()
    started, position = time.perf_counter(), 0
    for samples in file_pieces(path, rate, feed_ms):  # bounded memory, whatever the file's length
        if realtime:
            time.sleep(max(0.0, started + position / rate - time.perf_counter()))
        position += samples.size
        _feed(recognizer, stream, samples, meter, view)
    stream.input_finished()
    meter.add(stream, recognizer.decode(stream))
    view.clear()
    return stream.result.text, meter


def run_microphone(recognizer: Recognizer, view: LiveView, device: str | int | None = None,
                   feed_ms: int = 100, seconds: float | None = None) -> Meter:
    """Transcribe the microphone until Ctrl-C (or ``seconds``); each endpoint prints a final line."""
    try:
        import sounddevice
    except (ImportError, OSError) as error:
        raise SpeechmpqError("microphone input needs the optional sounddevice package and PortAudio: "
                             f"pip install 'speechmpq[mic]' ({error})") from None
    try:
        sounddevice.query_devices(device, kind="input")
    except (sounddevice.PortAudioError, ValueError) as error:
        raise SpeechmpqError(f"no microphone found ({error}); pass an audio file instead") from None
    rate = recognizer.info.sample_rate
    pieces: queue.Queue = queue.Queue()
    stream, meter = recognizer.create_stream(), Meter()

    def callback(data, frames, timing, status):
        pieces.put(data[:, 0].copy())

    started = time.monotonic()
    try:
        with sounddevice.InputStream(samplerate=rate, channels=1, dtype="float32", device=device,
                                     blocksize=rate * feed_ms // 1000, callback=callback):
            print("listening (Ctrl-C to stop)", file=sys.stderr)
            while seconds is None or time.monotonic() - started < seconds:
                try:
                    piece = pieces.get(timeout=0.5)
                except queue.Empty:
                    continue
                # an endpoint's segment is its committed text; the look-ahead past the silence
                # belongs to the next segment
                if _feed(recognizer, stream, piece, meter, view) and stream.is_endpoint \
                        and stream.result.stable.strip():
                    view.clear()
                    print(stream.result.stable, flush=True)
                    stream.reset()
    except KeyboardInterrupt:
        pass
    except sounddevice.PortAudioError as error:
        raise SpeechmpqError(f"microphone: {error}") from None
    stream.input_finished()
    meter.add(stream, recognizer.decode(stream))
    view.clear()
    if stream.result.text.strip():
        print(stream.result.text, flush=True)
    return meter


def demo(audio: list[str], model: str | None, config: RecognizerConfig, realtime: bool = False,
         microphone: bool = False, device: str | None = None, feed_ms: int = 100,
         seconds: float | None = None) -> int:
    if feed_ms <= 0:
        raise SpeechmpqError(f"--feed-ms must be > 0, not {feed_ms}")
    path = Path(model) if model else default_model()
    if microphone:  # may run for hours: keep RSS from creeping up (see runtime/memory.py)
        steady_allocator()
    recognizer = Recognizer(path, config)
    for warning in recognizer.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(_header(recognizer, path), file=sys.stderr)
    if getattr(recognizer.model, "kernels", None) is not None:
        print(recognizer.model.kernels.summary(), file=sys.stderr)
    print(recognizer.frontend_cache_note, file=sys.stderr)
    view = LiveView()
    if microphone:
        meter = run_microphone(recognizer, view, device, feed_ms, seconds)
        print(meter.summary(), file=sys.stderr)
        return 0
    if not audio:
        audio = [str(p) for p in sample_clips()]
        print("no audio given: the bundled sample clips (--mic for the microphone)", file=sys.stderr)
    failures = 0
    for name in audio:
        try:
            text, meter = run_file(recognizer, name, view, realtime, feed_ms)
        except SpeechmpqError as error:
            view.clear()
            print(f"error: {error}", file=sys.stderr)
            failures += 1
            continue
        print(text if len(audio) == 1 else f"{name}: {text}", flush=True)
        print(f"  {meter.summary()}", file=sys.stderr)
    return 1 if failures else 0
