"""Streaming CTC recognition on onnxruntime: one shared ``Recognizer``, one ``Stream`` per utterance.

    recognizer = Recognizer("models/demo-mpq.onnx")
    stream = recognizer.create_stream()
    for piece in microphone():                    # any sizes, any sample rate
        stream.accept_waveform(piece, 16000)
        recognizer.decode(stream)                 # decodes the chunks that are ready, else nothing
        print(stream.result.stable, "|", stream.result.tentative)
    stream.input_finished(); recognizer.decode(stream); print(stream.result.text)

How a chunk is decoded (frame stride S samples, receptive field F; chunk C, left L, right R):

    samples  ... | L: left context | C: new chunk | R: look-ahead |
    window    [f0*S - L,                           f1*S + R)         one model call, fixed size
    frames     discarded           | committed   | tentative |
                                   f0            f1

The window always starts on a frame boundary, so window frame j is global frame start/S + j; the
committed frames [f0, f1) feed the decoder, whose state carries across seams (a repeated token that
straddles a seam is merged, not doubled); the look-ahead frames only give the tentative tail of the
partial result and are decoded again, with more context, in the next window. Work per chunk is one
window of L + C + R samples whatever the stream's length, and the stream keeps only those samples.
Offline mode (``chunk_ms=0``) is the same code with one window over the whole input.

Front-end cache (models exported with ``frontend_cache``): the conv feature encoder's frames depend
only on the samples under their receptive field, so a stream keeps the frames of its last window and
the next window runs the convs only on samples from the first frame it lacks (at least its last frame
again, so a call always has samples); the transformer still sees the whole window. For layer-norm
front ends the logits are the same as without the cache; group-norm front ends normalise over the
window, so ``frontend_cache="auto"`` recomputes them per window.
"""

from __future__ import annotations

import collections
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from speechmpq.audio import normalize_waveform, to_mono_float32
from speechmpq.errors import AudioError, ModelError
from speechmpq.runtime.ctc import collapse_spaces
from speechmpq.runtime.decoding import (  # noqa: F401  (re-exported: recognizers are configured here)
    DECODERS,
    DecoderConfig,
    build_decoder,
    describe_decoder,
    find_lm,
)
from speechmpq.runtime.session import OnnxCTCModel, SessionConfig

NORMALIZATIONS = ("running", "window")


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
    # every sample up to the end of the current window, "window" those of the window alone
    normalization: str = "running"
    # reuse conv frames across windows: "auto" where the model says caching is exact (layer-norm
    # front end), "on" also where it is approximate (group norm), "off" recompute every window
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


@dataclass(frozen=True)
class Result:
    text: str  # everything recognised so far: stable + tentative
    stable: str  # decoded from committed frames; later chunks do not change it (greedy)
    tentative: str  # from look-ahead frames; may change when the next chunk is decoded
    is_final: bool  # input finished and every frame decoded

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Geometry:
    """The recognizer's chunking in samples; ``chunk == 0`` means offline."""

    stride: int
    receptive_field: int
    chunk: int
    left: int
    right: int

    def frames(self, samples: int) -> int:
        """Frames the model emits for ``samples`` input samples (valid convolutions)."""
        return 0 if samples < self.receptive_field else (samples - self.receptive_field) // self.stride + 1


class Recognizer:
    """One model (one onnxruntime session) shared by any number of streams."""

    def __init__(self, model: str | Path | OnnxCTCModel, config: RecognizerConfig | None = None):
        self.config = config or RecognizerConfig()
        # a ready backend (anything with .info and .logits) is used as is, e.g. for reference rows
        self.model = OnnxCTCModel(model, self.config.session) if isinstance(model, (str, Path)) else model
        self.info = self.model.info
        streaming = self.config.streaming
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
        self.geometry = Geometry(self.info.frame_stride_samples, self.info.receptive_field_samples,
                                 **samples)
        wanted = streaming.frontend_cache
        # a stand-in backend (reference rows, tests) without the cached call runs whole windows
        available = self.info.frontend_cache if hasattr(self.model, "logits_cached") else "none"
        if wanted == "on" and available == "none":
            raise ModelError(f"{getattr(self.model, 'path', 'the model')} has no front-end cache input "
                             f"(export it again with the cache)")
        self.frontend_cache = available != "none" and (wanted == "on" or (wanted == "auto"
                                                                         and available == "exact"))
        self.decoder = build_decoder(self.config.decoder, self.info.tokens, self.info.blank_id,
                                     self.info.word_delimiter, getattr(self.model, "path", None))

    @property
    def offline(self) -> bool:
        return self.geometry.chunk == 0

    def create_stream(self) -> Stream:
        return Stream(self)

    def decode(self, stream: Stream) -> int:
        """Decode every chunk of ``stream`` that is ready (all of it once input is finished);
        returns how many model calls that took (0: nothing was ready)."""
        calls = 0
        while (window := stream._next_window()) is not None:
            start, end, first, last, final = window
            if self.frontend_cache:
                begin = start // self.geometry.stride
                frames = self.geometry.frames(end - start)
                new_from, cached = stream._cached_features(begin, begin + frames)
                values = stream._model_input(new_from * self.geometry.stride, end)
                began = time.perf_counter()
                logits, features = self.model.logits_cached(values, cached)
                stream.compute_seconds.append(time.perf_counter() - began)
                if features.shape[0] != begin + frames - new_from:
                    raise ModelError(f"the model gave {features.shape[0]} new conv frames for "
                                     f"{values.size} samples, its metadata implies "
                                     f"{begin + frames - new_from}")
                stream._keep_features(begin, cached, features)
            else:
                values = stream._model_input(start, end)
                began = time.perf_counter()
                logits = self.model.logits(values)[0]  # (frames, vocab)
                stream.compute_seconds.append(time.perf_counter() - began)
            offset = start // self.geometry.stride
            if logits.shape[0] < last - offset:
                raise ModelError(f"the model gave {logits.shape[0]} frames for {end - start} samples, "
                                 f"its metadata implies {self.geometry.frames(end - start)}")
            stream._commit(logits[first - offset: last - offset], logits[last - offset:], last, final)
            calls += 1
        return calls

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> str:
        """Whole utterance in, final text out, through the configured chunking."""
        stream = self.create_stream()
        stream.accept_waveform(samples, sample_rate)
        stream.input_finished()
        self.decode(stream)
        return stream.result.text


class Stream:
    """One utterance (or an endless input split into segments by endpoints and ``reset``)."""

    def __init__(self, recognizer: Recognizer):
        self._recognizer = recognizer
        self._geometry = recognizer.geometry
        self._decoder = recognizer.decoder
        self._silent = np.array([not text.strip() for text in recognizer.decoder.texts])
        self._buffer = np.zeros(0, np.float32)  # samples from global index _buffer_start on
        self._buffer_start = 0
        self._received = 0
        self._resampler = None
        self._input_rate: int | None = None
        self._finished = False
        self._done = False  # final window decoded
        self._frames_done = 0
        self._stats = np.zeros(2)  # sum and sum of squares of samples [0, _stats_end)
        self._stats_end = 0
        self.compute_seconds: collections.deque[float] = collections.deque(maxlen=4096)
        self._features = np.zeros(
            (0, getattr(recognizer.model, "feature_dim", None) or 0), np.float32
        )  # conv frames
        self._features_start = 0  # global frame index of _features[0]
        self._start_segment()

    def _start_segment(self) -> None:
        self._state = self._decoder.initial()
        self._preview: str | None = None
        self._has_text = False
        self._trailing_silence = 0  # frames
        self._segment_frames = 0

    # ---- input ---------------------------------------------------------------------------------
    def accept_waveform(self, samples: np.ndarray, sample_rate: int) -> None:
        """Append mono (or ``(samples, channels)``) audio at ``sample_rate``; other rates than the
        model's are resampled as a stream (one rate per stream)."""
        if self._finished:
            raise AudioError("input_finished() was called; create a new stream for more audio")
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise AudioError(f"invalid sample rate {sample_rate!r}")
        if self._input_rate is not None and sample_rate != self._input_rate:
            raise AudioError(f"sample rate changed within a stream ({self._input_rate} -> {sample_rate})")
        self._input_rate = int(sample_rate)
        samples = to_mono_float32(samples)
        model_rate = self._recognizer.info.sample_rate
        if sample_rate != model_rate:
            if self._resampler is None:
                import soxr

                self._resampler = soxr.ResampleStream(sample_rate, model_rate, 1, dtype="float32",
                                                      quality="HQ")
            samples = self._resampler.resample_chunk(samples)
        self._append(samples)

    def _append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._buffer = np.concatenate([self._buffer, samples.astype(np.float32, copy=False)])
            self._received += samples.size

    def input_finished(self) -> None:
        """No more audio: the next ``decode`` decodes the rest, without look-ahead."""
        if not self._finished and self._resampler is not None:
            self._append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        self._finished = True

    @property
    def received_seconds(self) -> float:
        return self._received / self._recognizer.info.sample_rate

    # ---- chunking ------------------------------------------------------------------------------
    def _next_window(self) -> tuple[int, int, int, int, bool] | None:
        """(start, end) samples of the next model call, the frames [first, last) it commits and
        whether it is the final one; None when no chunk is ready."""
        if self._done:
            return None
        g, first = self._geometry, self._frames_done
        if g.chunk == 0:  # offline
            if not self._finished:
                return None
            start, end, final = 0, self._received, True
        else:
            last = first + g.chunk // g.stride
            need = max(last * g.stride + g.right, (last - 1) * g.stride + g.receptive_field)
            if self._received >= need:
                start, end, final = max(0, first * g.stride - g.left), need, False
            elif self._finished:
                start, end, final = max(0, first * g.stride - g.left), self._received, True
            else:
                return None
        if final:
            last = g.frames(self._received)
            if last <= first:  # nothing left (or too short for one frame)
                self._done = True
                self._preview = None
                return None
        return start, end, first, last, final

    def _model_input(self, start: int, end: int) -> np.ndarray:
        window = self._buffer[start - self._buffer_start: end - self._buffer_start]
        if end > self._stats_end:  # running statistics cover samples [0, end)
            fresh = self._buffer[self._stats_end - self._buffer_start: end - self._buffer_start]
            fresh = fresh.astype(np.float64)
            self._stats += (fresh.sum(), np.square(fresh).sum())
            self._stats_end = end
        if not self._recognizer.info.do_normalize:
            return window
        if self._recognizer.config.streaming.normalization == "window" or start == 0:
            return normalize_waveform(window)  # from the start, running statistics = the window's
        mean = self._stats[0] / self._stats_end
        variance = max(self._stats[1] / self._stats_end - mean * mean, 0.0)
        return ((window - mean) / np.sqrt(variance + 1e-7)).astype(np.float32)

    def _cached_features(self, begin: int, end: int) -> tuple[int, np.ndarray]:
        """For a window of global frames [begin, end): the first frame to compute and the cached
        frames [begin, that frame). At least the window's last frame is computed again."""
        cached_end = self._features_start + len(self._features)
        if not self._features_start <= begin < cached_end:
            return begin, self._features[:0]
        new_from = min(cached_end, end - 1)
        return new_from, self._features[begin - self._features_start : new_from - self._features_start]

    def _keep_features(self, begin: int, cached: np.ndarray, new: np.ndarray) -> None:
        self._features = np.concatenate([cached, new]) if cached.size else new
        self._features_start = begin

    def _commit(self, committed: np.ndarray, lookahead: np.ndarray, last: int, final: bool) -> None:
        g = self._geometry
        self._decoder.advance(self._state, committed)
        self._update_endpoint(committed.argmax(-1))
        self._preview = None if final or not lookahead.size else self._decoder.preview(self._state,
                                                                                       lookahead)
        self._frames_done = last
        self._done = final
        keep_from = max(0, last * g.stride - g.left)
        if keep_from > self._buffer_start:
            self._buffer = self._buffer[keep_from - self._buffer_start:].copy()
            self._buffer_start = keep_from

    def _update_endpoint(self, ids: np.ndarray) -> None:
        speech = np.flatnonzero(~self._silent[ids])
        if speech.size:
            self._has_text = True
            self._trailing_silence = ids.size - 1 - int(speech[-1])
        else:
            self._trailing_silence += ids.size
        self._segment_frames += ids.size

    # ---- output --------------------------------------------------------------------------------
    @property
    def result(self) -> Result:
        stable = collapse_spaces(self._decoder.text(self._state))
        text = stable if self._preview is None else collapse_spaces(self._preview)
        common = len(os.path.commonprefix([stable, text]))  # beam search may revise the committed best
        return Result(text=text, stable=text[:common], tentative=text[common:], is_final=self._done)

    @property
    def is_endpoint(self) -> bool:
        """Trailing silence or segment length past the ``EndpointConfig`` rules."""
        rules = self._recognizer.config.endpoint
        ms_per_frame = 1000 * self._geometry.stride / self._recognizer.info.sample_rate
        silence = self._trailing_silence * ms_per_frame
        if rules.max_segment_ms and self._segment_frames * ms_per_frame >= rules.max_segment_ms:
            return True
        return silence >= (rules.silence_ms_after_text if self._has_text else rules.silence_ms_before_text)

    def reset(self) -> None:
        """Start a new segment (typically after an endpoint): the text and the endpoint counters
        start over; audio keeps flowing from where it is. Take the segment's text from
        ``result.stable`` before: the tentative tail comes from look-ahead frames past the
        silence, which may already hold the next utterance, and the next segment decodes them."""
        self._start_segment()

    @property
    def is_final(self) -> bool:
        return self._done
