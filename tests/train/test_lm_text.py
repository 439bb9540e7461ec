"""The demo LM's text never holds a dev or test sentence; the held-out corpus speaks another text."""

from __future__ import annotations

from pathlib import Path

from speechmpq.train.corpus.build import CorpusConfig, plan_corpus, split_of_sentence
from speechmpq.train.corpus.heldout_text import HELDOUT_TEXT as HELDOUT
from speechmpq.train.corpus.lm_text import train_sentences


def test_no_dev_or_test_sentence_reaches_the_lm_text():
    lm_text = set(train_sentences(seed=1, count=20_000))  # the corpus's own seed: overlap is likeliest
    plans = plan_corpus(CorpusConfig(out=Path("unused"), splits=("dev", "test-clean", "test-other"),
                                     eval_utterances=300, seed=1))
    held = {p.transcript for p in plans}
    assert len(held) > 800
    assert not held & lm_text
    assert all(split_of_sentence(s) == "train" for s in lm_text)


def test_sentences_file_fills_the_requested_splits_in_turn():
    cfg = CorpusConfig(out=Path("unused"), splits=("test-clean", "test-other"), eval_utterances=40, seed=2,
                       sentences=HELDOUT)
    plans = plan_corpus(cfg)
    assert [p.split for p in plans].count("test-clean") == [p.split for p in plans].count("test-other") == 40
    source = {line.strip() for line in HELDOUT.read_text().splitlines()}
    assert all(p.tts_text in source for p in plans)
    assert len({p.transcript for p in plans}) == 80  # no sentence twice while the file lasts
    assert [p.transcript for p in plan_corpus(cfg)] == [p.transcript for p in plans]  # seeded
    grammar = {p.transcript for p in plan_corpus(CorpusConfig(out=Path("unused"), splits=("test-clean",),
                                                              eval_utterances=40, seed=2))}
    assert not grammar & {p.transcript for p in plans}
