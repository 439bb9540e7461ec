"""The verdict corpora: dev ones that every setting is chosen on, test ones that only judge.

Each role has two corpora of the same shape, a clean and a degraded split pooled per corpus:

    grammar-text   sentences of the corpus grammar (the demo model's own kind of text)
    heldout-text   sentences from Python's documentation (train/corpus/wordlists/heldout_python_docs.txt):
                   words and sentence shapes the grammar never makes

    role   corpus         seed        splits                    sentences
    test   grammar-text   seed        test-clean, test-other    the grammar's test hash buckets
    test   heldout-text   seed + 1    test-clean, test-other    the file, seeded shuffle
    dev    grammar-text   seed + 100  dev-clean, dev-other      the grammar's dev hash bucket
    dev    heldout-text   seed + 101  dev-clean, dev-other      the file minus every test sentence

No sentence of a dev corpus is in a test corpus: the grammar's hash buckets are disjoint, and the
held-out dev corpus is drawn with ``disjoint_from`` its test corpus (tests/jobs/test_verdict_corpora.py
checks both at full size; test corpora of up to ``MAX_TEST_UTTERANCES`` per split). The test corpora
are the ones ``speechmpq pipeline`` has always judged on.
"""

from __future__ import annotations

from pathlib import Path

ROLES = ("dev", "test")
CORPORA = ("grammar-text", "heldout-text")
SPLITS = {"test": ("test-clean", "test-other"), "dev": ("dev-clean", "dev-other")}
# the dev held-out corpus avoids every sentence of a test corpus this large (per split); test
# corpora of up to this size keep their first sentences whatever their size (turns in a fixed shuffle)
MAX_TEST_UTTERANCES = 1500
_SEED_OFFSET = {("test", "grammar-text"): 0, ("test", "heldout-text"): 1,
                ("dev", "grammar-text"): 100, ("dev", "heldout-text"): 101}


def corpus_configs(role: str, out: Path, seed: int = 1, utterances: int = 750, jobs: int | None = None,
                   overwrite: bool = False) -> dict:
    """Corpus name -> the ``CorpusConfig`` of that verdict corpus under ``out/NAME``."""
    from speechmpq.train.corpus.build import CorpusConfig
    from speechmpq.train.corpus.heldout_text import HELDOUT_TEXT

    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    if role == "test" and utterances > MAX_TEST_UTTERANCES:
        raise ValueError(f"test corpora of more than {MAX_TEST_UTTERANCES} utterances per split would "
                         "overlap the dev corpora")
    extra = {"jobs": jobs} if jobs else {}
    configs = {}
    for name in CORPORA:
        sentences = HELDOUT_TEXT if name == "heldout-text" else None
        disjoint_from = None
        if role == "dev" and sentences is not None:  # a sentence file has no hash split
            disjoint_from = corpus_configs("test", out, seed, MAX_TEST_UTTERANCES)[name]
        configs[name] = CorpusConfig(out=Path(out) / name, seed=seed + _SEED_OFFSET[(role, name)],
                                     splits=SPLITS[role], eval_utterances=utterances, overwrite=overwrite,
                                     sentences=sentences, disjoint_from=disjoint_from, **extra)
    return configs


def build_verdict_corpora(role: str, out: Path, seed: int = 1, utterances: int = 750,
                          jobs: int | None = None, progress: bool = True) -> dict[str, Path]:
    """Synthesize (or keep, where complete) the role's corpora; returns set name -> split folder,
    e.g. ``grammar-text/dev-clean``."""
    from speechmpq.train.corpus.build import build_corpus

    folders = {}
    for name, cfg in corpus_configs(role, out, seed, utterances, jobs, overwrite=True).items():
        if not all((cfg.out / split / "utterances.tsv").exists() for split in cfg.splits):
            build_corpus(cfg, progress=progress)
        folders.update({f"{name}/{split}": cfg.out / split for split in cfg.splits})
    return folders
