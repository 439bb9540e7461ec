"""Shared fixtures: a tiny synthetic corpus, generated once per test session."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    from speechmpq.train.corpus.build import CorpusConfig, build_corpus

    out = tmp_path_factory.mktemp("corpus") / "tiny"
    build_corpus(CorpusConfig(out=out, hours=0.01, seed=7, eval_utterances=6, jobs=2),
                 progress=False)
    return out
