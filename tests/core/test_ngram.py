"""The n-gram builder: hand-computed modified Kneser-Ney probabilities, normalisation, ARPA round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from speechmpq.ngram import count_ngrams, kneser_ney, write_arpa
from speechmpq.runtime import NGramLM


def _lm(tmp_path, sentences, order, **kwargs) -> NGramLM:
    model = kneser_ney(count_ngrams([s.split() for s in sentences], order), **kwargs)
    return NGramLM(write_arpa(model, tmp_path / "lm.arpa.gz"))


def _p(lm: NGramLM, history: list[str], word: str, sentence_start: bool = True) -> float:
    state = lm.initial_state() if sentence_start else ()
    for w in history:
        state = lm.score(state, lm.word_id(w))[1]
    return math.exp(lm.score(state, lm.word_id(word))[0])


def test_bigram_matches_hand_computed_kneser_ney(tmp_path):
    # <s> A B </s> twice, <s> B </s>. Too few counts for Chen & Goodman's discount estimate, so
    # D1, D2, D3+ = 0.5, 1, 1.5. Unigram continuation counts: A 1 (<s>), B 2 (A, <s>), </s> 1;
    # vocabulary A, B, </s>, <unk>: gamma() = (0.5*2 + 1*1)/4 = 0.5.
    lm = _lm(tmp_path, ["A B", "A B", "B"], order=2)
    assert _p(lm, [], "A", sentence_start=False) == pytest.approx(0.5 / 4 + 0.5 / 4, abs=1e-5)
    assert _p(lm, [], "B", sentence_start=False) == pytest.approx(1 / 4 + 0.5 / 4, abs=1e-5)
    assert _p(lm, [], "<unk>", sentence_start=False) == pytest.approx(0.5 / 4, abs=1e-5)
    # context <s>: c(<s> A) = 2, c(<s> B) = 1, gamma = (0.5 + 1)/3 = 0.5
    assert _p(lm, [], "A") == pytest.approx(1 / 3 + 0.5 * 0.25, abs=1e-5)
    assert _p(lm, [], "B") == pytest.approx(0.5 / 3 + 0.5 * 0.375, abs=1e-5)
    assert _p(lm, ["A"], "B") == pytest.approx(1 / 2 + 0.5 * 0.375, abs=1e-5)
    assert _p(lm, ["B"], "</s>") == pytest.approx(1.5 / 3 + 0.5 * 0.25, abs=1e-5)
    assert _p(lm, ["A"], "A") == pytest.approx(0.5 * 0.25, abs=1e-5)  # unseen: back-off weight x unigram


@pytest.mark.parametrize("min_count", [1, 2])
def test_every_distribution_sums_to_one(tmp_path, min_count):
    rng = np.random.default_rng(0)
    words = ["THE", "CAT", "DOG", "SAW", "A", "RAN", "HOME", "QUICKLY"]
    sentences = [" ".join(rng.choice(words, rng.integers(1, 7))) for _ in range(300)]
    lm = _lm(tmp_path, sentences, order=3, min_count=min_count)
    vocabulary = [w for w in lm.words if w != "<s>"]
    for history in ([], ["THE"], ["THE", "CAT"], ["RAN", "HOME"], ["QUICKLY", "QUICKLY"]):
        total = sum(_p(lm, history, w) for w in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-4), history


def test_pruning_keeps_frequent_trigrams_only(tmp_path):
    sentences = ["A B C"] * 3 + ["A B D"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full, pruned = _lm(tmp_path / "a", sentences, 3), _lm(tmp_path / "b", sentences, 3, min_count=2)
    assert full.ngrams[3] > pruned.ngrams[3] > 0
