"""pocketsphinx's binary trie LM read with numpy: an ARPA model through pocketsphinx's own binary writer
and back gives the same probabilities; ``speechmpq lm --arpa X.lm.bin`` converts it for the decoder."""

import pytest

from speechmpq.cli import main
from speechmpq.ngram import count_ngrams, kneser_ney, write_arpa
from speechmpq.runtime import NGramLM

SENTENCES = ("the cat sat on the mat", "a dog sat on a log", "the dog's mat", "the cat ran home",
             "a cat and a dog sat")


@pytest.fixture(scope="module")
def trie_lm(tmp_path_factory):
    pocketsphinx = pytest.importorskip("pocketsphinx", reason="pocketsphinx (the dev extra) is not installed")
    folder = tmp_path_factory.mktemp("sphinx")
    write_arpa(kneser_ney(count_ngrams([s.split() for s in SENTENCES], 3)), folder / "original.arpa")
    config, logmath = pocketsphinx.Config(), pocketsphinx.LogMath()  # kept alive while the model is
    model = pocketsphinx.NGramModel(config, logmath, str(folder / "original.arpa"))
    model.write(str(folder / "original.lm.bin"), pocketsphinx.NGramModel.str_to_type("bin"))
    return folder


def test_the_trie_reader_gives_back_the_arpa_model(trie_lm):
    from speechmpq.sphinx_lm import read_trie_lm

    original = NGramLM(trie_lm / "original.arpa")
    back = NGramLM.from_ngrams(*read_trie_lm(trie_lm / "original.lm.bin"), trie_lm / "original.lm.bin")
    assert original.ngrams == back.ngrams and original.words == back.words
    for sentence in [*SENTENCES, "the dog ran on a mat", "home the unseen cat"]:
        state_a, state_b = original.initial_state(), back.initial_state()
        for word in [*sentence.split(), "</s>"]:
            score_a, state_a = original.score(state_a, original.word_id(word))
            score_b, state_b = back.score(state_b, back.word_id(word))
            assert score_b == pytest.approx(score_a, abs=2e-3) and state_a == state_b  # logmath quantization


def test_lm_converts_a_trie_file_to_arrays_in_upper_case(trie_lm, tmp_path):
    assert main(["lm", "--arpa", str(trie_lm / "original.lm.bin"), "--out", str(tmp_path / "en.npz")]) == 0
    lm = NGramLM(tmp_path / "en.npz")
    assert {"CAT", "DOG'S", "</s>", "<unk>"} <= set(lm.words) and lm.order == 3
    assert "DOG'S\tD O G ' S |" in (tmp_path / "en.lexicon.txt").read_text().splitlines()


def test_a_file_that_is_not_a_trie_lm_is_refused(tmp_path):
    from speechmpq.errors import ModelError
    from speechmpq.sphinx_lm import TrieLM

    (tmp_path / "x.lm.bin").write_bytes(b"Darpa Trigram LM\x00")
    with pytest.raises(ModelError, match="not a pocketsphinx trie LM"):
        TrieLM(tmp_path / "x.lm.bin")
