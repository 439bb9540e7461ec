"""The dev/test protocol's corpora: no dev sentence is a test sentence, the test corpora are the
pipeline's as before, and the dev splits are spoken the way the test splits are (plans only: no audio)."""

import hashlib
from pathlib import Path

import pytest

from speechmpq.jobs.verdict_corpora import MAX_TEST_UTTERANCES, corpus_configs
from speechmpq.train.corpus.build import CorpusConfig, plan_corpus
from speechmpq.train.corpus.heldout_text import HELDOUT_TEXT


def _transcripts(cfg: CorpusConfig) -> set[str]:
    return {plan.transcript for plan in plan_corpus(cfg)}


@pytest.mark.parametrize("name", ["grammar-text", "heldout-text"])
def test_no_dev_sentence_is_in_a_test_corpus_at_full_size(tmp_path, name):
    dev = corpus_configs("dev", tmp_path, utterances=750)[name]
    test = corpus_configs("test", tmp_path, utterances=MAX_TEST_UTTERANCES)[name]
    dev_plans = plan_corpus(dev)
    assert {p.split for p in dev_plans} == {"dev-clean", "dev-other"}
    assert len(dev_plans) == 2 * 750
    dev_sentences = {p.transcript for p in dev_plans}
    assert len(dev_sentences) > 1400  # (almost) every dev utterance a sentence of its own
    assert not dev_sentences & _transcripts(test)


def test_the_test_corpora_are_the_ones_the_pipeline_always_judged_on(tmp_path):
    configs = corpus_configs("test", tmp_path, seed=1, utterances=750)
    grammar, heldout = configs["grammar-text"], configs["heldout-text"]
    assert (grammar.seed, grammar.splits, grammar.sentences, grammar.disjoint_from) == (
        1, ("test-clean", "test-other"), None, None)
    assert (heldout.seed, heldout.splits, heldout.sentences, heldout.disjoint_from) == (
        2, ("test-clean", "test-other"), HELDOUT_TEXT, None)
    assert grammar.eval_utterances == heldout.eval_utterances == 750


def test_dev_splits_are_spoken_like_the_test_splits(tmp_path):
    plans = plan_corpus(corpus_configs("dev", tmp_path, utterances=200)["grammar-text"])
    clean = [p for p in plans if p.split == "dev-clean"]
    other = [p for p in plans if p.split == "dev-other"]
    assert len(clean) == len(other) == 200
    assert all(p.snr_db is None and p.rt60_s is None for p in clean)
    assert all(p.snr_db is not None or p.rt60_s is not None for p in other)
    for split in (clean, other):  # half of the voices never heard in training, as in test
        assert 0.35 < sum(not p.seen for p in split) / len(split) < 0.65


def test_dev_conditions_leave_the_other_splits_unchanged():
    """Asking for dev-clean/dev-other instead of dev changes no other split's utterances."""
    common = {"out": Path("/tmp/unused"), "seed": 5, "hours": 0.02, "eval_utterances": 30}
    with_dev = plan_corpus(CorpusConfig(splits=("train", "dev", "test-clean"), **common))
    with_conditions = plan_corpus(CorpusConfig(splits=("train", "dev-clean", "dev-other", "test-clean"),
                                               **common))
    for split in ("train", "test-clean"):
        assert [p for p in with_dev if p.split == split] == [p for p in with_conditions if p.split == split]
    dev = {p.transcript for p in with_dev if p.split == "dev"}
    conditions = {p.transcript for p in with_conditions if p.split.startswith("dev-")}
    assert dev and conditions and len(dev & conditions) > 0  # the same hash bucket of sentences


def test_training_corpora_plans_are_unchanged():
    """The plans of the corpora made before the dev splits existed, byte for byte (digest taken with
    the code before the change)."""
    digest = hashlib.sha256()
    for cfg in [CorpusConfig(out="/tmp/unused", seed=1, hours=0.2, eval_utterances=100),
                CorpusConfig(out="/tmp/unused", seed=2, splits=("test-clean", "test-other"),
                             eval_utterances=300, sentences=HELDOUT_TEXT),
                CorpusConfig(out="/tmp/unused", seed=1, splits=("train", "test-clean"), hours=0.1,
                             eval_utterances=50)]:
        for plan in plan_corpus(cfg):
            digest.update(repr(plan).encode())
    assert digest.hexdigest() == "63db473d3ab99ed28753e0498281c009e9f31eab0930a3066d14b1f172b669aa"


def test_dev_and_its_conditions_cannot_be_asked_for_together():
    with pytest.raises(ValueError, match="dev-clean"):
        CorpusConfig(out="/tmp/unused", splits=("dev", "dev-clean"))


def test_test_corpora_larger_than_the_dev_guard_are_refused(tmp_path):
    with pytest.raises(ValueError, match="overlap"):
        corpus_configs("test", tmp_path, utterances=MAX_TEST_UTTERANCES + 1)


def test_a_disjoint_corpus_config_round_trips_through_corpus_json(tmp_path):
    dev = corpus_configs("dev", tmp_path, utterances=20)["heldout-text"]
    again = CorpusConfig.from_dict(dev.to_dict())
    assert again == dev
    assert isinstance(again.disjoint_from, CorpusConfig)
