"""The runtime's face: ``from speechmpq.runtime import ...`` works on a machine without torch, every
name in ``__all__`` resolves, a clip decodes through it, and every decoder keeps its promises."""

from pathlib import Path

import numpy as np

import speechmpq.runtime as runtime
from speechmpq.audio import load_audio
from speechmpq.runtime import DecoderConfig, Recognizer, build_decoder
from speechmpq.vocab import BLANK_ID, VOCAB, WORD_DELIMITER

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "models" / "demo-mpq.onnx"
CLIP = ROOT / "edge_demo" / "clips" / "clip1.flac"

def test_the_face_and_the_demos_import_and_decode_without_torch(without_torch):
    """Streamed in 100 ms pieces through the face, with torch blocked, the clip gives the text the
    same recognizer gives for the whole clip here."""
    expected = Recognizer(DEMO).transcribe(load_audio(CLIP), 16000)
    code = ("from speechmpq.runtime import Recognizer, RecognizerConfig, Stream, Result\n"
            "import speechmpq.runtime as runtime\n"
            "import speechmpq.edge_demo.terminal, speechmpq.edge_demo.server, speechmpq.edge_demo.arm_check\n"
            "missing = [name for name in runtime.__all__ if getattr(runtime, name, None) is None]\n"
            "assert not missing, missing\n"
            "from speechmpq.audio import load_audio\n"
            f"recognizer = Recognizer({str(DEMO)!r}, RecognizerConfig())\n"
            "stream = recognizer.create_stream()\n"
            "assert isinstance(stream, Stream)\n"
            f"samples = load_audio({str(CLIP)!r})\n"
            "for i in range(0, samples.size, 1600):\n"
            "    stream.accept_waveform(samples[i:i + 1600], 16000); recognizer.decode(stream)\n"
            "stream.input_finished(); recognizer.decode(stream)\n"
            "assert isinstance(stream.result, Result) and stream.result.is_final\n"
            "assert 'torch' not in sys.modules\n"
            "print(stream.result.text)")
    result = without_torch(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected and "SCHOOLTEACHER" in expected


def test_every_public_name_resolves_once():
    assert len(runtime.__all__) == len(set(runtime.__all__))
    for name in runtime.__all__:
        assert getattr(runtime, name) is not None, name
    assert {"Recognizer", "RecognizerConfig", "Stream", "Result", "StreamingConfig", "EndpointConfig",
            "DecoderConfig", "SessionConfig", "OnnxCTCModel", "ModelInfo", "CTCDecoder", "build_decoder",
            "find_lm"} <= set(runtime.__all__)
    assert set(dir(runtime)) >= set(runtime.__all__)


def test_the_face_loads_names_on_first_use(without_torch):
    """The benchmark parent imports its module of the package and must not load onnxruntime (its
    children inherit its peak RSS), so the face imports nothing until a name is used."""
    result = without_torch("import speechmpq.runtime, speechmpq.runtime.bench\n"
                  "from speechmpq.runtime import BenchConfig\n"
                  "assert 'onnxruntime' not in sys.modules, 'the face loaded onnxruntime'\n"
                  "from speechmpq.runtime import Recognizer\n"
                  "assert 'onnxruntime' in sys.modules")
    assert result.returncode == 0, result.stderr


def test_every_decoder_keeps_the_decoder_promises():
    """initial / advance / preview / text / describe / texts, as ``CTCDecoder`` states them; the
    describe() lines are the ones users see in the demos."""
    lm = DEMO.parent / "lm.arpa.gz"
    assert lm.is_file(), "the demo model's LM is committed beside it"
    decoders = {method: build_decoder(DecoderConfig(method, lm=str(lm) if method == "lm" else None),
                                      list(VOCAB), BLANK_ID, WORD_DELIMITER, DEMO)
                for method in ("greedy", "beam", "lm")}
    assert decoders["greedy"].describe() == "greedy CTC"
    assert decoders["beam"].describe() == "beam search, no LM"
    assert decoders["lm"].describe().startswith(f"LM decoder ({lm}, ")
    assert decoders["lm"].describe().endswith(" n-grams, beam 24)")
    logits = np.random.default_rng(0).normal(0, 3, (40, len(VOCAB))).astype(np.float32)
    for method, decoder in decoders.items():
        assert len(decoder.texts) == len(VOCAB), method
        state = decoder.initial()
        decoder.advance(state, logits[:30])
        before = decoder.text(state)
        assert isinstance(decoder.preview(state, logits[30:]), str)
        assert decoder.text(state) == before, f"{method}: preview changed the state"
