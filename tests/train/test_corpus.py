import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speechmpq.datasets import read_dataset, read_librispeech
from speechmpq.errors import SpeechmpqError
from speechmpq.train.corpus.build import (
    SEEN_VARIANTS,
    UNSEEN_VARIANTS,
    CorpusConfig,
    build_corpus,
    plan_corpus,
    split_of_sentence,
)
from speechmpq.train.corpus.espeak import ACCENTS, Prosody, get_engine


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != "corpus.json":  # corpus.json holds timings
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_gives_same_bytes(tiny_corpus, tmp_path):
    # Let espeak speak in this process first: the corpus must not depend on this process's state.
    get_engine().synthesize("some earlier speech", "en-us", "f2", Prosody(), seed=5)
    again = tmp_path / "again"
    build_corpus(CorpusConfig(out=again, hours=0.01, seed=7, eval_utterances=6, jobs=1),
                 progress=False)
    assert _digest(again) == _digest(tiny_corpus)


def test_different_seed_differs():
    a = plan_corpus(CorpusConfig(out=Path("unused"), hours=0.01, seed=1, eval_utterances=3))
    b = plan_corpus(CorpusConfig(out=Path("unused"), hours=0.01, seed=2, eval_utterances=3))
    assert [p.transcript for p in a] != [p.transcript for p in b]


def test_tree_layout_audio_format_and_reader(tiny_corpus):
    for split in ("train", "dev", "test-clean", "test-other"):
        utterances = read_librispeech(tiny_corpus / split)
        assert utterances, split
        for utterance in utterances:
            speaker, chapter, _ = utterance.utt_id.split("-")
            assert utterance.path == tiny_corpus / split / speaker / chapter / f"{utterance.utt_id}.flac"
            assert (utterance.path.parent / f"{speaker}-{chapter}.trans.txt").is_file()
            info = soundfile.info(str(utterance.path))
            assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
            assert 4 <= len(utterance.transcript.split()) <= 25


def test_audio_is_speech_not_silence_or_clipping(tiny_corpus):
    for utterance in read_librispeech(tiny_corpus / "test-clean"):
        audio, _ = soundfile.read(str(utterance.path))
        assert 0.05 < np.abs(audio).max() < 1.0
        assert audio.shape[0] > 16000 * 0.5


def test_splits_are_disjoint_and_unseen_voices_only_in_test(tiny_corpus):
    sentences = {}
    for split in ("train", "dev", "test-clean", "test-other"):
        sentences[split] = {u.transcript for u in read_librispeech(tiny_corpus / split)}
    splits = list(sentences)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            assert not sentences[a] & sentences[b], (a, b)
    rows = (tiny_corpus / "train" / "utterances.tsv").read_text().splitlines()[1:]
    assert all(row.split("\t")[4] == "1" for row in rows)
    plans = plan_corpus(CorpusConfig(out=Path("unused"), hours=0.05, seed=3, eval_utterances=40))
    assert all(p.variant in SEEN_VARIANTS for p in plans if not p.split.startswith("test"))
    test_variants = {p.variant for p in plans if p.split.startswith("test") and not p.seen}
    assert test_variants and test_variants <= set(UNSEEN_VARIANTS)
    assert all(split_of_sentence(p.transcript) == p.split for p in plans)


def test_existing_split_is_not_overwritten_by_accident(tiny_corpus):
    with pytest.raises(SpeechmpqError, match="--overwrite"):
        build_corpus(CorpusConfig(out=tiny_corpus, hours=0.01, seed=7, eval_utterances=6),
                     progress=False)


def test_every_accent_is_selectable():
    engine = get_engine()
    for accent in ACCENTS:
        assert engine.select_voice(accent, "m1").lower().endswith("+m1")
    with pytest.raises(SpeechmpqError):
        engine.select_voice("en", "no-such-variant")


def test_config_validation():
    with pytest.raises(ValueError, match="splits"):
        CorpusConfig(out=Path("x"), splits=("train", "nope"))
    with pytest.raises(ValueError, match="hours"):
        CorpusConfig(out=Path("x"), hours=0)
    with pytest.raises(ValueError, match="rate_wpm"):
        Prosody(rate_wpm=20)


def test_read_dataset_errors(tmp_path):
    with pytest.raises(SpeechmpqError, match="no utterances"):
        read_dataset(tmp_path)
    with pytest.raises(SpeechmpqError, match="no such"):
        read_dataset(tmp_path / "missing")
