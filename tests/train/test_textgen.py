import ast
import random
import re
import statistics
from pathlib import Path

import pytest

from speechmpq.train.corpus.textgen import (
    SentenceGenerator,
    normalize_transcript,
    number_to_words,
    vocabulary,
)

TRANSCRIPT = re.compile(r"^[A-Z']+( [A-Z']+)*$")


@pytest.fixture(scope="module")
def sample() -> list[tuple[str, str]]:
    gen = SentenceGenerator(seed=0)
    return [gen.sentence_pair() for _ in range(20_000)]


def test_same_seed_same_sentences():
    a, b = SentenceGenerator(123), SentenceGenerator(123)
    assert [a.sentence() for _ in range(200)] == [b.sentence() for _ in range(200)]


def test_different_seeds_differ():
    a, b = SentenceGenerator(1), SentenceGenerator(2)
    assert [a.sentence() for _ in range(200)] != [b.sentence() for _ in range(200)]


def test_global_random_state_does_not_matter():
    random.seed(1)
    gen = SentenceGenerator(5)
    first = [gen.sentence() for _ in range(20)]
    random.seed(2)
    gen = SentenceGenerator(5)
    assert [gen.sentence() for _ in range(20)] == first


def test_transcripts_are_normalised_and_4_to_25_words(sample):
    for _, transcript in sample[:2000]:
        assert TRANSCRIPT.match(transcript), transcript
        assert 4 <= len(transcript.split()) <= 25, transcript


def test_sentence_is_the_transcript_of_sentence_pair():
    a, b = SentenceGenerator(9), SentenceGenerator(9)
    assert [a.sentence() for _ in range(50)] == [b.sentence_pair()[1] for _ in range(50)]


def test_tts_text_reads_exactly_the_transcript(sample):
    for text, transcript in sample[:2000]:
        assert normalize_transcript(text) == transcript
        assert re.fullmatch(r"[A-Za-z' ,.?]+", text), text  # no digits, only , . ?
        assert text[-1] in ".?" and "  " not in text


def test_lengths_have_a_natural_spread(sample):
    lengths = [len(t.split()) for _, t in sample]
    assert 9.5 <= statistics.mean(lengths) <= 13
    assert min(lengths) <= 5 and max(lengths) >= 22
    assert sum(n >= 15 for n in lengths) > 0.1 * len(lengths)  # compound sentences
    assert sum(text.endswith("?") for text, _ in sample) > 0.08 * len(sample)


def test_vocabulary_is_large_and_covers_every_emitted_word(sample):
    vocab = vocabulary()
    assert len(vocab) >= 3000
    used = {w for _, t in sample for w in t.split()}
    assert used <= vocab, sorted(used - vocab)[:20]
    assert len(used) >= 2500


def test_contractions_possessives_and_numbers_appear(sample):
    used = {w for _, t in sample for w in t.split()}
    for word in ("DON'T", "CAN'T", "WON'T", "IT'S", "I'M", "THEY'RE", "WE'LL", "SHE'D",
                 "ISN'T", "WASN'T", "COULDN'T", "LET'S", "FIRST", "TWENTY", "O'CLOCK"):
        assert word in used, word
    assert any(w.endswith("'S") and w not in ("IT'S", "LET'S") for w in used)


def test_articles_follow_the_sound():
    gen = SentenceGenerator(3)
    for _ in range(3000):
        words = gen.sentence().split()
        for article, word in zip(words, words[1:], strict=False):
            if article == "A":
                assert word[0] not in "AEIO", words
            if article == "AN":
                assert word[0] in "AEIOU" or word.startswith("HO"), words


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (21, "twenty one"), (100, "one hundred"),
    (101, "one hundred one"), (999, "nine hundred ninety nine"), (1000, "one thousand"),
    (1984, "one thousand nine hundred eighty four"), (2024, "two thousand twenty four"),
    (1_000_000, "one million"),
    (123_456_789, "one hundred twenty three million four hundred fifty six thousand seven "
                  "hundred eighty nine"),
])
def test_number_to_words(n, words):
    assert number_to_words(n) == words


def test_number_to_words_range():
    with pytest.raises(ValueError):
        number_to_words(-1)
    with pytest.raises(ValueError):
        number_to_words(10**9)


@pytest.mark.parametrize("text, expected", [
    ("Hello, world!  How are you?", "HELLO WORLD HOW ARE YOU"),
    ("A well-known fact; (really).", "A WELL KNOWN FACT REALLY"),
    ("He paid 21 dollars in 1984.", "HE PAID TWENTY ONE DOLLARS IN ONE THOUSAND NINE HUNDRED "
                                    "EIGHTY FOUR"),
    ("  lots   of\tspace \n", "LOTS OF SPACE"),
    ("I don't think it's the miller's horse", "I DON'T THINK IT'S THE MILLER'S HORSE"),
    ("\u2018Don\u2019t,\u2019 she said", "DON'T SHE SAID"),
    ("the 3rd of May", "THE THIRD OF MAY"),
    ("1,200 people drank 2.5 cups", "ONE THOUSAND TWO HUNDRED PEOPLE DRANK TWO POINT FIVE CUPS"),
    ("caf\u00e9 na\u00efve", "CAFE NAIVE"),
    ("so\u2014said the caf\u00e9\u2019s owner", "SO SAID THE CAFE'S OWNER"),
    ("", ""),
])
def test_normalize_transcript(text, expected):
    assert normalize_transcript(text) == expected


def test_the_generator_modules_import_each_other_without_a_circle():
    """Every import between the corpus modules (TYPE_CHECKING ones included) points one way."""
    folder = Path(__file__).resolve().parents[2] / "train" / "corpus"
    modules = {path.stem: path for path in folder.glob("*.py")}
    edges = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level == 1:
                    targets |= {module} if module else {alias.name for alias in node.names}
                elif module.startswith("speechmpq.train.corpus."):
                    targets.add(module.rsplit(".", 1)[1])
        edges[name] = targets & set(modules)
    assert edges["textgen"] >= {"grammar", "sentence_frames", "words"}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import circle: {' -> '.join((*path, name))}"
        if name not in done:
            for target in sorted(edges[name]):
                visit(target, (*path, name))
            done.add(name)

    for name in sorted(edges):
        visit(name, ())
