"""One utterance's audio, cut into model windows and decoded: ``Stream``, its ``Result``, ``Window``.

A ``Recognizer`` (``runtime/recognizer.py``) runs the model; the stream decides what to run it on
(``next_window``) and decodes what comes back (``commit``).

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
again, so a call always has samples); the transformer still sees the whole window. The logits are the
same as without the cache only where nothing else a frame depends on changes between windows: a
layer-norm front end and raw input, or normalised input with ``normalization="frozen"``; group-norm
front ends normalise over the window, and running or per-window input statistics change under the
cached frames (``onnx_metadata.frontend_cache_exactness``; ``frontend_cache="auto"`` follows it).
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from speechmpq.audio import normalize_waveform, to_mono_float32
from speechmpq.errors import AudioError, ModelError
from speechmpq.runtime.ctc import collapse_spaces

if TYPE_CHECKING:
    from speechmpq.runtime.recognizer import Recognizer


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


@dataclass(frozen=True, eq=False)
class Window:
    """One model call a stream is ready for: ``Stream.next_window`` hands it out with the model
    input, the recognizer runs the model on it and hands the output back to ``Stream.commit``."""

    start: int  # first sample the window covers (global index, on a frame boundary)
    end: int  # one past its last sample
    first: int  # first global frame it commits
    last: int  # one past the last frame it commits; frames after it are look-ahead
    final: bool  # the input's last window: no look-ahead, the stream is done after it
    # (samples,) model input: the whole window, or with ``cached`` only the samples of the frames
    # the cache lacks (normalised if the model expects it)
    values: np.ndarray
    # (frames, channels) conv frames kept from the last window for this one's start, for the
    # model's cached call; None: the model runs on the whole window
    cached: np.ndarray | None


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
        self._frozen: tuple[float, float] | None = None  # (mean, std) after the first window ("frozen")
        self.compute_seconds: collections.deque[float] = collections.deque(maxlen=4096)
        # per decoded window, the sample (model rate) its window ended at: it was ready once that many
        # samples had arrived (latency accounting: edge_demo/server.py)
        self.window_ends: collections.deque[int] = collections.deque(maxlen=4096)
        self.windows_decoded = 0
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
    def next_window(self) -> Window | None:
        """The next model call that is ready, with its input; None when no chunk is ready (or
        every frame is decoded). Hand the model's output back to ``commit`` before asking again."""
        bounds = self._next_bounds()
        if bounds is None:
            return None
        start, end, first, last, final = bounds
        if not self._recognizer.frontend_cache:
            return Window(start, end, first, last, final, self._model_input(start, end), None)
        begin = start // self._geometry.stride
        new_from, cached = self._cached_features(begin, begin + self._geometry.frames(end - start))
        values = self._model_input(new_from * self._geometry.stride, end)
        return Window(start, end, first, last, final, values, cached)

    def commit(self, window: Window, logits: np.ndarray, features: np.ndarray | None = None) -> None:
        """Take back the model's output for ``window``: logits ``(frames, vocab)`` from the
        window's first frame on and, for a window with ``cached`` frames, the new conv frames
        ``(frames, channels)`` the model computed. Decodes the committed frames and previews the
        look-ahead ones."""
        g = self._geometry
        self.window_ends.append(window.end)
        self.windows_decoded += 1
        offset = window.start // g.stride  # global index of the window's first frame
        if window.cached is not None:
            if features is None:
                raise ValueError("a window with cached frames needs the model's new conv frames back")
            expected = g.frames(window.end - window.start) - len(window.cached)
            if features.shape[0] != expected:
                raise ModelError(f"the model gave {features.shape[0]} new conv frames for "
                                 f"{window.values.size} samples, its metadata implies {expected}")
            self._keep_features(offset, window.cached, features)
        if logits.shape[0] < window.last - offset:
            raise ModelError(f"the model gave {logits.shape[0]} frames for {window.end - window.start} "
                             f"samples, its metadata implies {g.frames(window.end - window.start)}")
        self._commit(logits[window.first - offset: window.last - offset], logits[window.last - offset:],
                     window.last, window.final)

    def _next_bounds(self) -> tuple[int, int, int, int, bool] | None:
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
        """Samples [start, end) as the model takes them; updates the running statistics."""
        samples = self._buffer[start - self._buffer_start: end - self._buffer_start]
        if end > self._stats_end:  # running statistics cover samples [0, end)
            fresh = self._buffer[self._stats_end - self._buffer_start: end - self._buffer_start]
            fresh = fresh.astype(np.float64)
            self._stats += (fresh.sum(), np.square(fresh).sum())
            self._stats_end = end
        if not self._recognizer.info.do_normalize:
            return samples
        mode = self._recognizer.config.streaming.normalization
        if mode == "frozen":
            if self._frozen is None:  # the first window: samples [0, end), as running statistics
                mean = self._stats[0] / self._stats_end
                variance = max(self._stats[1] / self._stats_end - mean * mean, 0.0)
                self._frozen = (mean, float(np.sqrt(variance + 1e-7)))
            return ((samples - self._frozen[0]) / self._frozen[1]).astype(np.float32)
        if mode == "window" or start == 0:
            return normalize_waveform(samples)  # from the start, running statistics = the window's
        mean = self._stats[0] / self._stats_end
        variance = max(self._stats[1] / self._stats_end - mean * mean, 0.0)
        return ((samples - mean) / np.sqrt(variance + 1e-7)).astype(np.float32)

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
