"""The lexicon + n-gram decoder: exact against brute force on tiny cases, chunking-invariant."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from speechmpq.ngram import count_ngrams, kneser_ney, write_arpa
from speechmpq.runtime import Lexicon, LexiconLMDecoder, NGramLM

TOKENS = ["<pad>", "|", "A", "B"]
WORDS = ["A", "B", "AB", "BA", "ABA"]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    sentences = [["AB", "A"], ["A", "B"], ["BA", "AB"], ["A"], ["ABA", "B", "A"], ["B", "B"]]
    path = tmp_path_factory.mktemp("lm") / "lm.arpa"
    return NGramLM(write_arpa(kneser_ney(count_ngrams(sentences, 3)), path))


def _decoder(lm, **kwargs):
    lexicon = Lexicon.from_words(WORDS, TOKENS, lm)
    return LexiconLMDecoder(TOKENS, 0, "|", lm, lexicon, **kwargs)


def _label(path: tuple[int, ...]) -> tuple[int, ...]:
    """CTC collapse (merge repeats, drop blanks), then drop delimiters where no word is open."""
    collapsed = [t for i, t in enumerate(path) if t != 0 and (i == 0 or t != path[i - 1])]
    out = []
    for t in collapsed:
        if t == 1 and (not out or out[-1] == 1):
            continue
        out.append(t)
    return tuple(out)


def _brute_force(lm, log_probs: np.ndarray, lm_weight: float, word_score: float) -> tuple[str, float]:
    totals: dict[tuple, float] = {}
    for path in itertools.product(range(len(TOKENS)), repeat=log_probs.shape[0]):
        p = sum(log_probs[t, k] for t, k in enumerate(path))
        label = _label(path)
        totals[label] = np.logaddexp(totals.get(label, -math.inf), p)
    best = ("", -math.inf)
    for label, ctc in totals.items():
        words = "".join(TOKENS[t] for t in label).split("|")
        words = words[:-1] if words[-1] == "" else words
        if any(w not in WORDS for w in words):
            continue
        state, lm_total = lm.initial_state(), 0.0
        for w in [*words, "</s>"]:
            logp, state = lm.score(state, lm.word_id(w))
            lm_total += logp
        score = ctc + lm_weight * lm_total + word_score * len(words)
        if score > best[1]:
            best = (" ".join(words), score)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_exhaustive_beam_equals_brute_force(lm, seed):
    rng = np.random.default_rng(seed)
    frames = 6
    logits = rng.normal(0, 2.0, (frames, len(TOKENS)))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    lm_weight, word_score = float(rng.uniform(0.2, 1.5)), float(rng.uniform(-1, 2))
    decoder = _decoder(lm, beam_size=10**6, lm_weight=lm_weight, word_score=word_score,
                       prune_log_prob=math.inf, beam_threshold=math.inf)
    state = decoder.initial()
    decoder.advance(state, logits)
    text, score = _brute_force(lm, log_probs, lm_weight, word_score)
    assert " ".join(decoder.text(state).split()) == text
    assert max(decoder.finished_score(e) for e in state.beams.values()) == pytest.approx(score, abs=1e-9)


def test_language_model_changes_the_choice(tmp_path):
    # acoustically "B A" (0.85 x 0.6 x 0.8) beats "BA"; an LM that has seen "BA" twenty times as a
    # sentence and "B", "A" only alone turns it round
    sentences = [["BA"]] * 20 + [["B"], ["A"]]
    lm = NGramLM(write_arpa(kneser_ney(count_ngrams(sentences, 2)), tmp_path / "lm.arpa"))
    frames = np.log(np.array([[0.05, 0.05, 0.05, 0.85], [0.05, 0.6, 0.3, 0.05], [0.1, 0.05, 0.8, 0.05]]))
    results = []
    for weight in (0.0, 3.0):
        decoder = _decoder(lm, lm_weight=weight, word_score=0.0, beam_size=64)
        state = decoder.initial()
        decoder.advance(state, frames)
        results.append(" ".join(decoder.text(state).split()))
    assert results == ["B A", "BA"]


@pytest.mark.parametrize("seed", range(4))
def test_random_pieces_equal_whole_input(lm, seed):
    rng = np.random.default_rng(100 + seed)
    logits = rng.normal(0, 3.0, (120, len(TOKENS)))
    decoder = _decoder(lm, beam_size=8)
    whole = decoder.initial()
    decoder.advance(whole, logits)
    pieces, start = decoder.initial(), 0
    while start < logits.shape[0]:
        size = int(rng.integers(0, 9))
        if start + size < logits.shape[0]:
            decoder.preview(pieces, logits[start + size:start + size + 5])  # must not change the state
        decoder.advance(pieces, logits[start:start + size])
        start += size
    assert decoder.text(pieces) == decoder.text(whole)
    assert sorted(whole.beams) == sorted(pieces.beams)


def test_only_lexicon_words_come_out(lm):
    rng = np.random.default_rng(7)
    decoder = _decoder(lm, beam_size=16)
    state = decoder.initial()
    decoder.advance(state, rng.normal(0, 3.0, (200, len(TOKENS))))
    assert all(w in WORDS for w in decoder.text(state).split())


def test_flat_trie_spells_exactly_the_lexicon(lm):
    words = ["A", "AB", "ABA", "BA", "B", "AAB", "BBB"]
    lexicon = Lexicon.from_words(words, TOKENS, lm)
    unigram = lm.unigram_logp()
    seen = {}
    for prefix in {w[:i] for w in words for i in range(1, len(w) + 1)} | {"AA" + "A", "BAB", "BBA"}:
        node = 0
        for ch in prefix:
            node = lexicon.child(node, TOKENS.index(ch)) if node >= 0 else -1
        below = [w for w in words if w.startswith(prefix)]
        if not below:  # nothing spelled this way: the walk leaves the trie
            assert node == -1, prefix
            continue
        assert node > 0 and node not in seen.values()
        seen[prefix] = node
        assert lexicon.word[node] == (lm.word_id(prefix) if prefix in words else -1)  # AAB, BBB: <unk>
        assert lexicon.smear[node] == pytest.approx(max(unigram[lm.word_id(w)] for w in below))
    assert lexicon.nodes == len(seen) + 1 and lexicon.child(0, 0) == -1  # blank spells nothing


def test_a_later_word_spelled_alike_ends_the_node(lm):
    lexicon = Lexicon({"A": [2], "AB": [2, 3], "BA": [2]}, lm)
    assert lm.words[lexicon.word[lexicon.child(0, 2)]] == "BA"
