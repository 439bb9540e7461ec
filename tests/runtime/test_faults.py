"""Faults in the runtime: one bad piece or one failed model call does not poison a stream, the shared
recognizer, or the other streams."""

from pathlib import Path

import numpy as np
import pytest

from speechmpq.audio import load_audio
from speechmpq.datasets import read_dataset
from speechmpq.errors import AudioError
from speechmpq.runtime import Recognizer

MODEL = Path(__file__).resolve().parents[2] / "models" / "demo-mpq.onnx"


@pytest.fixture(scope="module")
def samples(tiny_corpus):
    utterances = read_dataset(tiny_corpus / "test-clean")[:2]
    return [load_audio(u.path) for u in utterances]


def _feed(recognizer, stream, audio, piece=1600):
    for start in range(0, audio.size, piece):
        stream.accept_waveform(audio[start: start + piece], 16000)
        recognizer.decode(stream)


def test_a_bad_piece_is_refused_and_the_stream_goes_on(samples):
    recognizer = Recognizer(MODEL)
    clean = recognizer.transcribe(samples[0], 16000)
    stream = recognizer.create_stream()
    half = samples[0].size // 2
    _feed(recognizer, stream, samples[0][:half])
    for bad in (np.array([np.nan, 0.1], np.float32), np.array([np.inf], np.float32)):
        with pytest.raises(AudioError):
            stream.accept_waveform(bad, 16000)
    with pytest.raises(AudioError):
        stream.accept_waveform(samples[0][:10], 8000)  # another rate within one stream
    _feed(recognizer, stream, samples[0][half:])
    stream.input_finished()
    recognizer.decode(stream)
    assert stream.result.text == clean


def test_a_failed_model_call_affects_only_that_call(samples):
    recognizer = Recognizer(MODEL)
    expected = [recognizer.transcribe(audio, 16000) for audio in samples]
    method = "logits_cached" if recognizer.frontend_cache else "logits"  # the call a window makes
    real, calls = getattr(recognizer.model, method), []

    def flaky(*arguments):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated onnxruntime failure")
        return real(*arguments)

    setattr(recognizer.model, method, flaky)
    streams = [recognizer.create_stream() for _ in samples]
    failures = 0
    for stream, audio in zip(streams, samples, strict=True):
        stream.accept_waveform(audio, 16000)
    for stream in streams:
        stream.input_finished()
        while not stream.is_final:
            try:
                recognizer.decode(stream)
            except RuntimeError:
                failures += 1  # the same window is decoded again on the next call
    assert failures == 1
    assert [stream.result.text for stream in streams] == expected
