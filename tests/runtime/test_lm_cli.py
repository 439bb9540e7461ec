"""``speechmpq lm`` and the LM decoder through the recognizer and the command line."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from speechmpq.audio import load_audio
from speechmpq.cli import main
from speechmpq.datasets import read_dataset
from speechmpq.runtime import DecoderConfig, NGramLM, Recognizer, RecognizerConfig

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo-mpq.onnx"


@pytest.fixture(scope="module")
def lm_folder(tiny_corpus, tmp_path_factory):
    """A copy of the demo model (linked) with an LM from the tiny corpus's transcripts beside it."""
    folder = tmp_path_factory.mktemp("with_lm")
    os.symlink(DEMO, folder / "model.onnx")
    extra = folder / "extra.txt"
    extra.write_text("The cat sat on 2 mats.\nA DOG RAN HOME\n")
    assert main(["lm", "--text", str(tiny_corpus / "train"), str(tiny_corpus / "test-clean"), str(extra),
                 "--order", "3", "--out", str(folder / "lm.arpa.gz")]) == 0
    return folder


def test_lm_command_writes_arpa_and_lexicon(lm_folder):
    with gzip.open(lm_folder / "lm.arpa.gz", "rt") as handle:
        head = handle.read(200)
    assert head.lstrip().startswith("\\data\\") and "ngram 3=" in head
    lm = NGramLM(lm_folder / "lm.arpa.gz")
    assert lm.order == 3 and {"CAT", "MATS", "TWO", "<unk>", "</s>"} <= set(lm.words)  # normalised text
    lexicon = (lm_folder / "lexicon.txt").read_text().splitlines()
    assert "MATS\tM A T S |" in lexicon and not any(line.startswith("<") for line in lexicon)


@pytest.mark.parametrize("argv, message", [
    (["--order", "0"], "--order must be 1..6"),
    (["--out", "x.txt"], "must end in .arpa"),
    (["--text", "missing.txt"], "cannot read"),
])
def test_lm_command_refuses_bad_input_in_one_line(tmp_path, capsys, argv, message):
    text = tmp_path / "t.txt"
    text.write_text("HELLO WORLD\n")
    base = {"--text": str(text), "--out": str(tmp_path / "lm.arpa"), "--order": "3"}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        base[flag] = str(tmp_path / value) if flag != "--order" else value
    assert main(["lm", *[x for pair in base.items() for x in pair]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_broken_lm_is_one_line_error(tmp_path, tiny_corpus, capsys):
    bad = tmp_path / "lm.arpa"
    bad.write_text("\\data\\\nngram 1=5\n\n\\1-grams:\n-1.0 A\n\\end\\\n")
    audio = read_dataset(tiny_corpus / "test-clean")[0].path
    assert main(["stream", str(DEMO), str(audio), "--decoder", "lm", "--lm", str(bad), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "announces 5 1-grams" in err[0]


def test_auto_decoder_finds_the_lm_beside_the_model(lm_folder, tiny_corpus):
    model = lm_folder / "model.onnx"
    auto = Recognizer(model, RecognizerConfig(decoder=DecoderConfig("auto")))
    greedy = Recognizer(model, RecognizerConfig(decoder=DecoderConfig("greedy")))
    assert type(auto.decoder).__name__ == "LexiconLMDecoder"
    assert type(greedy.decoder).__name__ == "GreedyDecoder"
    words = set((lm_folder / "lexicon.txt").read_text().split())
    errors = {"auto": 0, "greedy": 0}
    for utterance in read_dataset(tiny_corpus / "test-clean"):
        samples = load_audio(utterance.path)
        text = auto.transcribe(samples, 16000)
        assert set(text.split()) <= words  # only lexicon words come out
        for name, recognizer in (("auto", auto), ("greedy", greedy)):
            hypothesis = recognizer.transcribe(samples, 16000).split()
            errors[name] += sum(a != b for a, b in zip(hypothesis, utterance.transcript.split(),
                                                       strict=False))
    # the LM knows these sentences (its text includes them): it must not do worse than greedy
    assert errors["auto"] <= errors["greedy"]


def test_lm_decoder_needs_an_lm(tmp_path):
    os.symlink(DEMO, tmp_path / "model.onnx")
    with pytest.raises(Exception, match="needs --lm FILE"):
        Recognizer(tmp_path / "model.onnx", RecognizerConfig(decoder=DecoderConfig("lm")))


def test_an_arpa_lm_converts_to_arrays_that_score_the_same_in_upper_case(tmp_path):
    from speechmpq.ngram import count_ngrams, kneser_ney, write_arpa

    sentences = [s.split() for s in ("the cat sat on the mat", "a dog sat on a log", "the dog's mat",
                                     "dr. who 2 cats")]
    write_arpa(kneser_ney(count_ngrams(sentences, 3)), tmp_path / "lower.arpa")
    assert main(["lm", "--arpa", str(tmp_path / "lower.arpa"), "--out", str(tmp_path / "en.npz")]) == 0
    text, arrays = NGramLM(tmp_path / "lower.arpa"), NGramLM(tmp_path / "en.npz")
    assert arrays.order == text.order == 3 and arrays.ngrams == text.ngrams
    state_text, state_arrays = text.initial_state(), arrays.initial_state()
    for word in ["the", "dog", "sat", "on", "a", "mat", "unseen", "</s>"]:
        upper = word if word.startswith("<") else word.upper()
        expected, state_text = text.score(state_text, text.word_id(word))
        got, state_arrays = arrays.score(state_arrays, arrays.word_id(upper))
        assert got == pytest.approx(expected, abs=1e-6) and state_arrays == state_text
    lexicon = (tmp_path / "en.lexicon.txt").read_text().splitlines()
    assert "DOG'S\tD O G ' S |" in lexicon and not any(line.startswith(("DR.", "2")) for line in lexicon)


def test_a_broken_lm_array_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(Exception, match="not a readable LM array file"):
        NGramLM(tmp_path / "bad.npz")
    assert main(["lm", "--arpa", str(tmp_path / "missing.arpa"), "--out", str(tmp_path / "x.npz")]) == 1
    assert main(["lm", "--arpa", str(tmp_path / "missing.arpa"), "--out", str(tmp_path / "x.arpa")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "cannot read" in err[0] and "must end in .npz" in err[1]


def test_a_converted_lm_takes_its_own_lexicon_not_the_folder_s(tmp_path):
    from speechmpq.runtime.decoding import default_lexicon

    (tmp_path / "lexicon.txt").write_text("CAT\tC A T |\n")  # the grammar LM's, beside
    assert default_lexicon(tmp_path / "en-us.lm.npz") == tmp_path / "en-us.lm.lexicon.txt"
    assert default_lexicon(tmp_path / "lm.arpa.gz") == tmp_path / "lexicon.txt"
    (tmp_path / "big.lexicon.txt").write_text("DOG\tD O G |\n")
    assert default_lexicon(tmp_path / "big.arpa") == tmp_path / "big.lexicon.txt"


def test_a_model_that_recommends_its_lm_gets_that_one_only_with_its_weights(lm_folder, tmp_path):
    import shutil

    import onnx

    from speechmpq.onnx_metadata import ModelInfo, set_metadata
    from speechmpq.runtime.decoding import LM_WEIGHT, WORD_SCORE, missing_lm_hint

    model = onnx.load(str(DEMO))
    set_metadata(model, {"speechmpq.lm": "own.lm.arpa.gz", "speechmpq.lm_weight": "0.2",
                         "speechmpq.word_score": "1.5", "speechmpq.lm_beam_size": "48"})
    onnx.save(model, str(tmp_path / "model.onnx"))
    shutil.copy(lm_folder / "lm.arpa.gz", tmp_path / "lm.arpa.gz")  # the folder's LM: not this model's
    path = tmp_path / "model.onnx"

    def decoder(**config):
        return Recognizer(path, RecognizerConfig(decoder=DecoderConfig(**config))).decoder

    alone = Recognizer(path, RecognizerConfig(decoder=DecoderConfig("auto")))
    assert type(alone.decoder).__name__ == "GreedyDecoder"  # its own LM is not there: said once
    assert [w for w in alone.warnings if "own.lm.arpa.gz" in w] == [missing_lm_hint(path, alone.info)]
    info = ModelInfo.from_metadata({p.key: p.value for p in model.metadata_props})
    assert info.lm == "own.lm.arpa.gz" and "speechmpq lm --from-pocketsphinx" in missing_lm_hint(path, info)
    shutil.copy(lm_folder / "lm.arpa.gz", tmp_path / "own.lm.arpa.gz")
    assert missing_lm_hint(path, info) is None
    own = decoder(method="auto")
    assert own.source == str(tmp_path / "own.lm.arpa.gz") and (own.lm_weight, own.word_score) == (0.2, 1.5)
    assert own.beam_size == 48
    told = decoder(method="auto", lm_weight=0.9, beam_size=8)
    assert (told.lm_weight, told.word_score, told.beam_size) == (0.9, 1.5, 8)
    other = decoder(method="lm", lm=str(tmp_path / "lm.arpa.gz"))  # the advice is not for another LM
    assert (other.lm_weight, other.word_score, other.beam_size) == (LM_WEIGHT, WORD_SCORE, 24)
