"""Streaming CTC recognition on onnxruntime: one shared ``Recognizer``, one ``Stream`` per utterance.

    recognizer = Recognizer("models/demo-mpq.onnx")
    stream = recognizer.create_stream()
    for piece in microphone():                    # any sizes, any sample rate
        stream.accept_waveform(piece, 16000)
        recognizer.decode(stream)                 # decodes the chunks that are ready, else nothing
        print(stream.result.stable, "|", stream.result.tentative)
    stream.input_finished(); recognizer.decode(stream); print(stream.result.text)

The recognizer holds what streams share (the model, the chunking in samples, the decoder) and runs
the model; each ``Stream`` cuts its audio into windows and decodes the logits it is handed back
(``runtime/stream.py`` draws the window).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from speechmpq.errors import ModelError
from speechmpq.onnx_metadata import NORMALIZATIONS, frontend_cache_default
from speechmpq.runtime.decoding import DecoderConfig, build_decoder, missing_lm_hint
from speechmpq.runtime.session import OnnxCTCModel, SessionConfig
from speechmpq.runtime.stream import Geometry, Stream


@dataclass
class StreamingConfig:
    # new audio per model call, in ms (a multiple of the model's frame stride); None takes the
    # model's recommendation from its metadata; 0 is offline: one window over the whole input
    chunk_ms: int | None = None
    # audio before the chunk the model sees again (ms, multiple of the frame stride); None: metadata
    left_context_ms: int | None = None
    # look-ahead after the chunk (ms, multiple of the frame stride); None: metadata
    right_context_ms: int | None = None
    # for models trained on per-utterance normalised input: "running" uses the mean and variance of
    # every sample up to the end of the current window, "window" those of the window alone, "frozen"
    # those of the first window, then fixed (the one mode in which the front-end cache is exact)
    normalization: str = "running"
    # reuse conv frames across windows: "auto" where caching is exact for this model and
    # normalisation, or approximate but measured harmless (onnx_metadata.frontend_cache_default:
    # group norm on raw input), "on" also where it is approximate and unmeasured, "off" recompute
    # every window
    frontend_cache: str = "auto"

    def __post_init__(self):
        for name in ("chunk_ms", "left_context_ms", "right_context_ms"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a whole number of ms >= 0, not {value!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, not {self.normalization!r}")
        if self.frontend_cache not in ("auto", "on", "off"):
            raise ValueError(f"frontend_cache must be auto, on or off, not {self.frontend_cache!r}")


@dataclass
class EndpointConfig:
    # an endpoint is trailing silence (blank or word-delimiter frames) of at least this long ...
    silence_ms_before_text: int = 2400  # ... when nothing has been recognised yet
    silence_ms_after_text: int = 1200  # ... after some text
    # or a segment this long whatever it contains; 0: no limit
    max_segment_ms: int = 20000

    def __post_init__(self):
        for name, value in asdict(self).items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, not {value}")


@dataclass
class RecognizerConfig:
    session: SessionConfig = field(default_factory=SessionConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RecognizerConfig:
        parts = {"session": SessionConfig, "streaming": StreamingConfig, "decoder": DecoderConfig,
                 "endpoint": EndpointConfig}
        unknown = set(data) - set(parts)
        if unknown:
            raise ValueError(f"unknown recognizer config sections: {sorted(unknown)}")
        return cls(**{name: parts[name](**data[name]) for name in data})


class Recognizer:
    """One model (one onnxruntime session) shared by any number of streams."""

    def __init__(self, model: str | Path | OnnxCTCModel, config: RecognizerConfig | None = None):
        self.config = config or RecognizerConfig()
        # a ready backend (anything with .info and .logits) is used as is, e.g. for reference rows
        self.model = OnnxCTCModel(model, self.config.session) if isinstance(model, (str, Path)) else model
        self.info = self.model.info
        self.geometry = self._geometry(self.config.streaming)
        wanted = self.config.streaming.frontend_cache
        # a stand-in backend (reference rows, tests) without the cached call runs whole windows
        available = self.info.frontend_cache if hasattr(self.model, "logits_cached") else "none"
        if wanted == "on" and available == "none":
            raise ModelError(f"{getattr(self.model, 'path', 'the model')} has no front-end cache input "
                             f"(export it again with the cache)")
        default, why = frontend_cache_default(self.info.frontend_norm, self.info.do_normalize,
                                              self.config.streaming.normalization)
        self.frontend_cache = available != "none" and (wanted == "on" or (wanted == "auto" and default))
        # one line for headers: whether the cache is used, and why
        self.frontend_cache_note = ("front-end cache: none in this model" if available == "none" else
                                    f"front-end cache {'on' if self.frontend_cache else 'off'} ({why})")
        self.decoder = build_decoder(self.config.decoder, self.info.tokens, self.info.blank_id,
                                     self.info.word_delimiter, getattr(self.model, "path", None), self.info)
        # what a user should hear once: the model's metadata warnings, and an LM it lacks
        missing = (missing_lm_hint(getattr(self.model, "path", None), self.info)
                   if self.config.decoder.method == "auto" and not self.config.decoder.lm else None)
        self.warnings = [*self.info.warnings, *([missing] if missing else [])]

    def _geometry(self, streaming: StreamingConfig) -> Geometry:
        """The chunking in samples: the config's ms, or the model's metadata where it says None."""
        ms = {"chunk": streaming.chunk_ms, "left": streaming.left_context_ms,
              "right": streaming.right_context_ms}
        defaults = {"chunk": self.info.chunk_ms, "left": self.info.left_context_ms,
                    "right": self.info.right_context_ms}
        samples = {}
        stride_ms = 1000 * self.info.frame_stride_samples / self.info.sample_rate
        for name, value in ms.items():
            value = defaults[name] if value is None else value
            count = value * self.info.sample_rate / 1000
            if count != int(count) or int(count) % self.info.frame_stride_samples:
                raise ValueError(f"{name} {value} ms is not a multiple of the model's frame stride "
                                 f"({stride_ms:g} ms)")
            samples[name] = int(count)
        return Geometry(self.info.frame_stride_samples, self.info.receptive_field_samples, **samples)

    @property
    def offline(self) -> bool:
        return self.geometry.chunk == 0

    def create_stream(self) -> Stream:
        return Stream(self)

    def decode(self, stream: Stream) -> int:
        """Decode every chunk of ``stream`` that is ready (all of it once input is finished);
        returns how many model calls that took (0: nothing was ready)."""
        calls = 0
        while (window := stream.next_window()) is not None:
            began = time.perf_counter()
            if window.cached is None:
                logits, features = self.model.logits(window.values)[0], None  # (frames, vocab)
            else:
                logits, features = self.model.logits_cached(window.values, window.cached)
            stream.compute_seconds.append(time.perf_counter() - began)
            stream.commit(window, logits, features)
            calls += 1
        return calls

    def decode_streams(self, streams: list[Stream]) -> int:
        """``decode`` for many streams, batched: each round takes the next ready window of every
        stream, groups windows of equal shape (samples, cached frames: every stream in its steady
        state has the same) and runs each group in one model call; rounds repeat until no stream has
        a ready chunk. Returns the model calls made. Each stream's ``compute_seconds`` gets the time
        of the call its window was in (what that stream waited for the model)."""
        calls = 0
        while True:
            ready = [(stream, window) for stream in streams if (window := stream.next_window()) is not None]
            if not ready:
                return calls
            groups: dict[tuple, list] = {}
            for stream, window in ready:
                key = (window.values.size, None if window.cached is None else window.cached.shape[0])
                groups.setdefault(key, []).append((stream, window))
            for members in groups.values():
                self._run_group(members)
                calls += 1

    def _run_group(self, members: list) -> None:
        """One model call for windows of equal shape; hands each stream its row."""
        windows = [window for _, window in members]
        began = time.perf_counter()
        if len(members) == 1 or not hasattr(self.model, "logits_cached_batch"):
            outputs = []
            for window in windows:
                if window.cached is None:
                    outputs.append((self.model.logits(window.values)[0], None))
                else:
                    outputs.append(self.model.logits_cached(window.values, window.cached))
        elif windows[0].cached is None:
            logits = self.model.logits(np.stack([w.values for w in windows]))
            outputs = [(row, None) for row in logits]
        else:
            logits, features = self.model.logits_cached_batch(np.stack([w.values for w in windows]),
                                                              np.stack([w.cached for w in windows]))
            outputs = list(zip(logits, features, strict=True))
        seconds = time.perf_counter() - began
        for (stream, window), (logits, features) in zip(members, outputs, strict=True):
            stream.compute_seconds.append(seconds)
            stream.commit(window, logits, features)

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> str:
        """Whole utterance in, final text out, through the configured chunking."""
        stream = self.create_stream()
        stream.accept_waveform(samples, sample_rate)
        stream.input_finished()
        self.decode(stream)
        return stream.result.text
