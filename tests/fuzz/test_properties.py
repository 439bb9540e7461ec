"""Property-based tests (hypothesis): the audio reader, the metadata and bit-plan parsers, CTC decoding.

Each property says what must hold for *any* input: a clean result or the package's own error type,
never another exception. The default suite runs a modest number of examples per property;
``SPEECHMPQ_FUZZ_EXAMPLES=N`` raises it (``scripts/fuzz.sh`` runs >= 10,000 cases in all).
"""

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speechmpq import bitplan
from speechmpq.audio import load_audio
from speechmpq.errors import AudioError, ModelError
from speechmpq.onnx_metadata import ModelInfo
from speechmpq.runtime import GreedyDecoder, PrefixBeamDecoder
from speechmpq.runtime.ctc import collapse_spaces
from speechmpq.vocab import BLANK_ID, VOCAB, WORD_DELIMITER

EXAMPLES = int(os.environ.get("SPEECHMPQ_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
TMP = Path(tempfile.mkdtemp(prefix="speechmpq-fuzz-"))

# ---- audio reader ------------------------------------------------------------------------------


def _valid_audio_bytes(format_: str, subtype: str, samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=format_, subtype=subtype)
    return buffer.getvalue()


FORMATS = [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_32"), ("WAV", "FLOAT"), ("WAV", "PCM_U8"),
           ("FLAC", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS")]


@st.composite
def audio_files(draw):
    """Valid files of many formats, then maybe cut, flipped or replaced by junk."""
    format_, subtype = draw(st.sampled_from(FORMATS))
    rate = draw(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]))
    channels = draw(st.integers(1, 3))
    frames = draw(st.integers(0, 4000))
    samples = draw(st.sampled_from(["noise", "silence", "clipped"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    data = {"noise": rng.uniform(-0.9, 0.9, (frames, channels)), "silence": np.zeros((frames, channels)),
            "clipped": rng.uniform(-4, 4, (frames, channels))}[samples].astype(np.float32)
    payload = _valid_audio_bytes(format_, subtype, data if samples != "clipped" else np.clip(data, -1, 1),
                                 rate)
    damage = draw(st.sampled_from(["none", "truncate", "flip", "junk", "empty"]))
    if damage == "truncate":
        payload = payload[: draw(st.integers(0, len(payload)))]
    elif damage == "flip" and payload:
        position = draw(st.integers(0, len(payload) - 1))
        payload = payload[:position] + bytes([payload[position] ^ 0xFF]) + payload[position + 1:]
    elif damage == "junk":
        payload = draw(st.binary(max_size=2048))
    elif damage == "empty":
        payload = b""
    suffix = {"WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg"}[format_]
    return payload, suffix, rate, damage


@FUZZ
@given(audio_files())
def test_audio_reader_returns_clean_mono_or_a_clear_error(case):
    payload, suffix, rate, damage = case
    path = TMP / f"case{suffix}"
    path.write_bytes(payload)
    try:
        samples = load_audio(path)
    except AudioError as error:
        assert str(path) in str(error) or path.name in str(error)
        return
    assert samples.dtype == np.float32 and samples.ndim == 1 and samples.size > 0
    assert np.isfinite(samples).all()


# ---- metadata and bit plans -------------------------------------------------------------------

KEYS = ["vocab", "sample_rate", "do_normalize", "frame_stride_samples", "receptive_field_samples", "blank_id",
        "word_delimiter", "speechmpq.format_version", "speechmpq.chunk_ms", "speechmpq.left_context_ms",
        "speechmpq.right_context_ms", "speechmpq.accuracy_level", "speechmpq.bitplan", "speechmpq.weights"]
VALUES = st.one_of(st.text(max_size=30), st.integers(-5, 100000).map(str), st.sampled_from(
    ["true", "false", "1", "0", "{}", "[]", "null", "nan", "1e309", json.dumps({"a": 0, "b": 1}),
     json.dumps({t: i for i, t in enumerate(VOCAB)})]))


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=len(KEYS)))
def test_metadata_parser_accepts_or_names_the_problem(metadata):
    try:
        info = ModelInfo.from_metadata(metadata, "fuzz.onnx")
    except ModelError as error:
        assert str(error).startswith("fuzz.onnx")
        return
    assert info.sample_rate > 0 and info.frame_stride_samples > 0 and 0 <= info.blank_id < len(info.tokens)


VALID_PLAN = json.loads(
    (Path(__file__).resolve().parents[2] / "models" / "demo-mpq" / "bitplan.json").read_text())
ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=False)
                        | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


@st.composite
def mutated_plans(draw):
    """The committed demo plan with a few fields deleted or replaced by arbitrary JSON."""
    plan = json.loads(json.dumps(VALID_PLAN))
    for _ in range(draw(st.integers(0, 3))):
        layer = draw(st.sampled_from(sorted(plan["layers"]))) if isinstance(plan.get("layers"), dict) \
            and plan["layers"] else None
        target = plan["layers"][layer] if layer and draw(st.booleans()) and isinstance(
            plan["layers"][layer], dict) else plan
        key = draw(st.sampled_from(sorted(target) + ["extra"]))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(ANY_JSON)
    return plan


@FUZZ
@given(mutated_plans())
def test_bitplan_parser_accepts_or_raises_bitplan_error(plan):
    try:
        checked = bitplan.loads(json.dumps(plan))
    except bitplan.BitPlanError:
        return
    for layer in checked["layers"].values():
        assert isinstance(layer["bits"], int) and bitplan.MIN_BITS <= layer["bits"] <= bitplan.MAX_BITS
        assert layer["bits"] in checked["candidates"] or not layer.get("searched", True)
    assert abs(checked["average_bits"] - bitplan.average_bits(checked["layers"])) <= 1e-4


@FUZZ
@given(st.text(max_size=300))
def test_bitplan_parser_on_arbitrary_text(text):
    with pytest.raises(bitplan.BitPlanError):
        bitplan.loads(text if not text.strip().startswith("{") else text + "}{")


# ---- CTC decoding -------------------------------------------------------------------------------

TOKENS = list(VOCAB)


@st.composite
def logits_and_cuts(draw):
    frames = draw(st.integers(0, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    peaked = draw(st.booleans())
    logits = rng.normal(0, 1, (frames, len(TOKENS))).astype(np.float32)
    if peaked:
        logits[np.arange(frames), rng.integers(0, len(TOKENS), frames)] += 8
    cuts = sorted(draw(st.lists(st.integers(0, frames), max_size=6)))
    return logits, cuts


def _pieces(logits, cuts):
    bounds = [0, *cuts, logits.shape[0]]
    return [logits[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@FUZZ
@given(logits_and_cuts())
def test_greedy_decoding_does_not_depend_on_where_chunks_end(case):
    logits, cuts = case
    decoder = GreedyDecoder(TOKENS, BLANK_ID, WORD_DELIMITER)
    whole, pieces = decoder.initial(), decoder.initial()
    decoder.advance(whole, logits)
    for piece in _pieces(logits, cuts):
        decoder.advance(pieces, piece)
    text = collapse_spaces(decoder.text(pieces))
    assert text == collapse_spaces(decoder.text(whole))
    assert set(text) <= set("".join(decoder.texts))


@FUZZ
@given(logits_and_cuts(), st.integers(1, 6))
def test_beam_decoding_never_fails_and_is_chunking_invariant(case, beam):
    logits, cuts = case
    decoder = PrefixBeamDecoder(TOKENS, BLANK_ID, WORD_DELIMITER, beam_size=beam)
    log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True) if logits.size else logits
    whole, pieces = decoder.initial(), decoder.initial()
    decoder.advance(whole, log_probs)
    for piece in _pieces(log_probs, cuts):
        decoder.advance(pieces, piece)
    assert decoder.text(pieces) == decoder.text(whole)
    assert isinstance(decoder.preview(pieces, log_probs[-3:]), str)
