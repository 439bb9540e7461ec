"""Streaming recognizer: chunked decoding against offline decoding of the same audio and model."""

from pathlib import Path

import numpy as np
import pytest

from speechmpq.audio import load_audio
from speechmpq.datasets import read_dataset
from speechmpq.errors import AudioError
from speechmpq.runtime import (
    DecoderConfig,
    EndpointConfig,
    GreedyDecoder,
    OnnxCTCModel,
    PrefixBeamDecoder,
    Recognizer,
    RecognizerConfig,
    StreamingConfig,
)
from speechmpq.vocab import VOCAB, vocab_dict

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo-mpq.onnx"


@pytest.fixture(scope="module")
def model():
    return OnnxCTCModel(DEMO)


@pytest.fixture(scope="module")
def utterances(tiny_corpus):
    return [(u, load_audio(u.path)) for u in read_dataset(tiny_corpus / "test-clean")]


def recognizer(model, **streaming) -> Recognizer:
    return Recognizer(model, RecognizerConfig(streaming=StreamingConfig(**streaming)))


def stream_in_pieces(rec: Recognizer, samples: np.ndarray, rng, max_piece: int) -> tuple[str, list]:
    """Feed random-sized pieces, decoding after each; returns the final text and every partial."""
    stream, position, partials = rec.create_stream(), 0, []
    while position < samples.size:
        size = int(rng.integers(1, max_piece))
        stream.accept_waveform(samples[position: position + size], 16000)
        position += size
        rec.decode(stream)
        partials.append(stream.result)
    stream.input_finished()
    rec.decode(stream)
    assert stream.result.is_final and not stream.result.tentative
    return stream.result.text, partials


def test_offline_mode_is_the_plain_offline_transcript(model, utterances):
    rec = recognizer(model, chunk_ms=0)
    for _, samples in utterances:
        assert rec.transcribe(samples, 16000) == model.transcribe(samples)


def test_random_piece_sizes_give_the_same_transcript_as_one_piece(model, utterances):
    rng = np.random.default_rng(0)
    rec = recognizer(model, chunk_ms=320, left_context_ms=640, right_context_ms=320)
    for _, samples in utterances:
        whole = rec.transcribe(samples, 16000)
        pieces, partials = stream_in_pieces(rec, samples, rng, 3000)
        assert pieces == whole
        stables = [p.stable for p in partials]
        assert all(b.startswith(a) for a, b in zip(stables[:-1], stables[1:], strict=True))


class LocalModel:
    """A stand-in whose frame t sees only samples [320 t, 320 t + field), as a model with no attention
    would: every frame's token comes from the frame's energy and zero crossings."""

    def __init__(self, info):
        self.info = info

    def logits(self, values):
        values = np.asarray(values, np.float32).reshape(-1)
        field = self.info.receptive_field_samples
        frames = max(0, (values.size - field) // 320 + 1)
        logits = np.zeros((1, frames, len(VOCAB)), np.float32)
        for t in range(frames):
            frame = values[320 * t: 320 * t + field]
            loud = np.sqrt(np.mean(frame**2)) > 0.02
            crossings = int(np.sum(np.abs(np.diff(np.sign(frame))) > 0)) // 4
            logits[0, t, 5 + crossings % 27 if loud else 0] = 1.0
        return logits


def test_streaming_gets_the_offline_transcript_when_frames_are_local(model, utterances):
    """With a model whose frames depend on nearby samples only, chunked decoding with random piece
    sizes must reproduce the offline transcript exactly: no character lost or doubled at a seam."""
    rng = np.random.default_rng(1)
    local = LocalModel(model.info)
    offline = Recognizer(local, RecognizerConfig(streaming=StreamingConfig(chunk_ms=0)))
    for chunk_ms, left_ms, right_ms in [(320, 0, 20), (640, 2560, 320), (20, 20, 0)]:
        rec = Recognizer(local, RecognizerConfig(streaming=StreamingConfig(chunk_ms, left_ms, right_ms)))
        for _, samples in utterances[:3]:
            expected = offline.transcribe(samples, 16000)
            assert len(expected.replace(" ", "")) >= 10
            assert stream_in_pieces(rec, samples, rng, 4000)[0] == expected


def test_demo_model_streams_close_to_offline(model, utterances):
    """The demo model attends to the whole input (cutting the input 2 s later moves logits at its
    start), so a stream differs from offline decoding in a few characters, not more."""
    import jiwer

    rng = np.random.default_rng(2)
    rec = recognizer(model)  # the chunking the model's metadata recommends
    streamed, offline, partials = [], [], []
    for _, samples in utterances:
        text, pieces = stream_in_pieces(rec, samples, rng, 4000)
        streamed.append(text)
        offline.append(model.transcribe(samples))
        partials += pieces
    assert jiwer.cer(offline, streamed) < 0.1
    assert any(p.tentative for p in partials), "look-ahead never produced a tentative tail"


def test_each_chunk_costs_one_fixed_size_window(model):
    rec = recognizer(model, chunk_ms=320, left_context_ms=640, right_context_ms=320)
    stream, windows = rec.create_stream(), []
    for _ in range(20 * 1000 // 100):  # 20 s of noise in 100 ms pieces
        stream.accept_waveform(np.random.default_rng(0).normal(0, 0.1, 1600).astype(np.float32), 16000)
        while (window := stream.next_window()) is not None:  # the model's part, with zero outputs
            windows.append(window.end - window.start)
            frames = rec.geometry.frames(window.end - window.start)
            features = None if window.cached is None else np.zeros(
                (frames - len(window.cached), model.feature_dim), np.float32)
            stream.commit(window, np.zeros((frames, len(VOCAB)), np.float32), features)
        assert stream._buffer.size <= (640 + 320 + 320 + 100) * 16  # one window and one piece
    assert len(windows) == 20 * 1000 // 320 - 1 and set(windows[3:]) == {(640 + 320 + 320) * 16}


def test_chunk_sizes_must_be_multiples_of_the_frame_stride(model):
    with pytest.raises(ValueError, match="multiple of the model's frame stride"):
        recognizer(model, chunk_ms=330)
    with pytest.raises(ValueError, match=">= 0"):
        StreamingConfig(right_context_ms=-20)


def test_other_sample_rates_are_resampled_as_a_stream(model, utterances):
    import soxr

    _, samples = utterances[0]
    at_8k = soxr.resample(samples, 16000, 8000).astype(np.float32)
    rec = recognizer(model, chunk_ms=0)
    stream = rec.create_stream()
    for piece in np.array_split(at_8k, 7):
        stream.accept_waveform(piece, 8000)
    stream.input_finished()
    rec.decode(stream)
    assert abs(stream.received_seconds - samples.size / 16000) < 0.01
    with pytest.raises(AudioError, match="sample rate changed"):
        stream2 = rec.create_stream()
        stream2.accept_waveform(at_8k[:100], 8000)
        stream2.accept_waveform(at_8k[:100], 16000)


def test_bad_audio_is_refused_with_a_message(model):
    stream = recognizer(model).create_stream()
    with pytest.raises(AudioError, match="NaN"):
        stream.accept_waveform(np.array([0.0, np.nan], np.float32), 16000)
    with pytest.raises(AudioError, match="invalid sample rate"):
        stream.accept_waveform(np.zeros(10, np.float32), 0)
    stream.input_finished()
    with pytest.raises(AudioError, match="input_finished"):
        stream.accept_waveform(np.zeros(10, np.float32), 16000)


def test_too_short_input_gives_empty_final_result(model):
    rec = recognizer(model)
    assert rec.transcribe(np.zeros(100, np.float32), 16000) == ""
    assert rec.transcribe(np.zeros(0, np.float32), 16000) == ""


def test_endpoint_after_trailing_silence_and_reset(model, utterances):
    rec = Recognizer(model, RecognizerConfig(
        streaming=StreamingConfig(chunk_ms=320, left_context_ms=640, right_context_ms=320),
        endpoint=EndpointConfig(silence_ms_after_text=800, silence_ms_before_text=2000)))
    _, samples = utterances[0]
    stream = rec.create_stream()
    stream.accept_waveform(samples, 16000)
    rec.decode(stream)
    assert stream.result.text and not stream.is_endpoint
    stream.accept_waveform(np.zeros(16000 * 2, np.float32), 16000)
    rec.decode(stream)
    assert stream.is_endpoint
    stream.reset()
    assert stream.result.text == "" and not stream.is_endpoint
    stream.accept_waveform(np.zeros(16000 * 3, np.float32), 16000)
    rec.decode(stream)
    assert stream.is_endpoint and stream.result.text == ""  # the rule for no text at all


def test_greedy_decoder_merges_a_repeat_across_a_seam():
    decoder = GreedyDecoder(list(VOCAB), 0, "|")
    ids = [0, 7, 7, 0, 7, 7, 4, 6, 6, 6, 0]  # A A | T
    logits = np.eye(len(VOCAB))[ids]
    for split in range(len(ids) + 1):
        state = decoder.initial()
        decoder.advance(state, logits[:split])
        decoder.advance(state, logits[split:])
        assert decoder.text(state) == "AA T"


def test_beam_search_agrees_with_greedy_on_peaked_frames_and_prefers_merged_paths():
    vocab = vocab_dict()
    rng = np.random.default_rng(0)
    ids = rng.choice([0, vocab["A"], vocab["B"], vocab["|"]], size=60)
    logits = np.eye(len(VOCAB))[ids] * 12.0
    greedy, beam = GreedyDecoder(list(VOCAB), 0, "|"), PrefixBeamDecoder(list(VOCAB), 0, "|", beam_size=4)
    state_g, state_b = greedy.initial(), beam.initial()
    for piece in np.array_split(logits, 5):
        greedy.advance(state_g, piece)
        beam.advance(state_b, piece)
    assert beam.text(state_b) == greedy.text(state_g)
    # two frames: A 0.4 / blank 0.6 each. Best path is "" (0.36) but "A" sums AA, A_, _A = 0.64
    probs = np.full((2, len(VOCAB)), 1e-9)
    probs[:, 0], probs[:, vocab["A"]] = 0.6, 0.4
    state = beam.initial()
    beam.advance(state, np.log(probs))
    assert beam.text(state) == "A"


def test_beam_decoder_streams_like_offline(model, utterances):
    """Beams carry across seams: chunked beam search over local frames = one pass over all frames;
    on the demo model it stays close to greedy (no language model to change its mind)."""
    import jiwer

    local = LocalModel(model.info)
    beam = DecoderConfig(method="beam", beam_size=4)
    offline = Recognizer(local, RecognizerConfig(streaming=StreamingConfig(chunk_ms=0), decoder=beam))
    chunked = Recognizer(local, RecognizerConfig(streaming=StreamingConfig(320, 640, 320), decoder=beam))
    demo = Recognizer(model, RecognizerConfig(streaming=StreamingConfig(chunk_ms=0), decoder=beam))
    for _, samples in utterances[:3]:
        assert chunked.transcribe(samples, 16000) == offline.transcribe(samples, 16000)
        assert jiwer.cer(model.transcribe(samples), demo.transcribe(samples, 16000)) < 0.1


def test_config_round_trips_through_a_dict():
    config = RecognizerConfig(streaming=StreamingConfig(chunk_ms=320), decoder=DecoderConfig("beam", 4))
    assert RecognizerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        RecognizerConfig.from_dict({"bogus": {}})


def test_batched_decoding_equals_decoding_each_stream(tmp_path):
    """decode_streams: many streams of different lengths and start times, fed in different piece
    sizes, decoded in shared model calls give the transcripts of decoding each alone."""
    from speechmpq.audio import load_audio
    from speechmpq.runtime import Recognizer

    root = Path(__file__).resolve().parents[2]
    clips = sorted((root / "edge_demo" / "clips").glob("*.flac"))
    audio = [load_audio(clip) for clip in clips]
    audio += [np.concatenate([audio[0], audio[1]]), audio[1][: audio[1].size // 2]]
    recognizer = Recognizer(root / "models" / "demo-mpq.onnx")
    alone = [recognizer.transcribe(samples, 16000) for samples in audio]
    streams = [recognizer.create_stream() for _ in audio]
    positions, pieces, calls = [0] * len(audio), [1600, 3200, 4800, 8000], 0
    late = 2  # the last stream starts two rounds late
    for round_ in range(10_000):
        for index, (stream, samples) in enumerate(zip(streams, audio, strict=True)):
            if index == len(audio) - 1 and round_ < late or stream.is_final:
                continue
            piece = pieces[index % len(pieces)]
            stream.accept_waveform(samples[positions[index]: positions[index] + piece], 16000)
            positions[index] += piece
            if positions[index] >= samples.size:
                stream.input_finished()
        calls += recognizer.decode_streams(streams)
        if all(stream.is_final for stream in streams):
            break
    assert [stream.result.text for stream in streams] == alone
    windows = sum(len(stream.compute_seconds) for stream in streams)
    assert calls < windows  # some calls ran several streams' windows together
