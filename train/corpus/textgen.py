"""English sentences for a synthetic speech corpus, spoken by a TTS engine (espeak-ng).

A recognizer trained on the corpus also learns its word statistics, so the sentences must
read like English: grammar.py, spoken.py and sentence_frames.py build them from the
part-of-speech word lists in wordlists/ (inflected forms written out in the files, so no
fragile suffix rules at run time).

    gen = SentenceGenerator(seed=7)
    text, transcript = gen.sentence_pair()
    # e.g. "Although Captain Payne hears her, he finishes a few noodles."
    #      "ALTHOUGH CAPTAIN PAYNE HEARS HER HE FINISHES A FEW NOODLES"

The transcript is normalised LibriSpeech style (A-Z, apostrophe, single spaces) by
speechmpq.text.normalize_transcript, the same rules as for real datasets; the text has the
same words plus , . ? for prosody. Only the standard library (and the project's
speechmpq.text) is used, and a seed fully determines the output: no set iteration, no
global random state, no dependence on PYTHONHASHSEED.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import NamedTuple

from speechmpq.text import normalize_transcript

from . import sentence_frames
from .grammar import FIXED_WORDS, Grammar
from .spoken import NUMBER_WORDS, number_to_words

__all__ = ["SentenceGenerator", "normalize_transcript", "number_to_words", "vocabulary"]

WORDLISTS = Path(__file__).with_name("wordlists")
MIN_WORDS, MAX_WORDS = 4, 25


class Noun(NamedTuple):
    sg: str
    pl: str | None  # None: uncountable
    extra: tuple[str, ...]  # gender, usual preposition, unit type or measured kinds


class Verb(NamedTuple):
    base: str
    third: str
    past: str
    pp: str
    ing: str
    subjects: tuple[str, ...]
    objects: tuple[str, ...]


class Adjective(NamedTuple):
    word: str
    comparative: str | None  # "more" for adjectives compared with more/most
    superlative: str | None


class Pronoun(NamedTuple):
    subj: str
    obj: str
    poss: str
    refl: str
    person: int
    plural: bool
    gender: str


def _rows(name: str) -> list[list[str]]:
    """Whitespace-split lines of a word list, without comments and blank lines."""
    text = (WORDLISTS / name).read_text(encoding="utf-8")
    return [line.split("#", 1)[0].split() for line in text.splitlines()
            if line.split("#", 1)[0].strip()]


def _tagged(name: str, proper: tuple[str, ...] = ()) -> dict[str, list[tuple[str, ...]]]:
    """Lines "tag word..." grouped by tag, in file order; tags in proper are capitalised."""
    table: dict[str, list[tuple[str, ...]]] = {}
    for tag, *words in _rows(name):
        if tag in proper:
            words = [w if w == "the" else w.capitalize() for w in words]
        table.setdefault(tag, []).append(tuple(words))
    return table


class Lexicon:
    """Every word list, indexed the way the grammar looks words up. Lists keep file order,
    so choices depend on the seed only."""

    def __init__(self) -> None:
        self.nouns: dict[str, list[Noun]] = {}
        for kind, sg, pl, *extra in _rows("nouns.txt"):
            noun = Noun(sg, None if pl == "-" else pl, tuple(",".join(extra).split(",")))
            self.nouns.setdefault(kind, []).append(noun)
        self.verbs = [Verb(*forms, tuple(subj.split(",")), tuple(obj.split(",")))
                      for *forms, subj, obj in _rows("verbs.txt")]
        self.adjectives: dict[str, list[Adjective]] = {}
        for word, kinds, *compared in _rows("adjectives.txt"):
            adj = Adjective(word, *(compared or (None, None)))
            for kind in kinds.split(","):
                self.adjectives.setdefault(kind, []).append(adj)
        self.names = _tagged("names.txt", ("m", "f", "surname", "title"))
        self.titles = [(title, gender.lower(), part.lower())
                       for title, gender, part in self.names.pop("title")]
        self.places = _tagged("places.txt", ("city", "country", "region"))
        self.times = _tagged("times.txt", ("weekday", "month"))
        self.adverbs = _tagged("adverbs.txt")
        self.preps = _tagged("prepositions.txt")
        self.conjunctions = _tagged("conjunctions.txt")
        self.determiners: dict[str, tuple[list[tuple[str, ...]], list[int]]] = {}
        for tag, weight, *words in _rows("determiners.txt"):
            phrases, weights = self.determiners.setdefault(tag, ([], []))
            phrases.append(tuple(words))
            weights.append(int(weight))
        self.pronouns = [Pronoun(s, o, p, r, int(n), num == "pl", g)
                         for s, o, p, r, n, num, g in _rows("pronouns.txt")]
        self.contractions = {(a, b): c for a, b, c in _rows("contractions.txt")}

    def words(self) -> set[str]:
        """Every word the lists can contribute, possessives ('s) and weekday plurals included."""
        out: set[str] = set()
        for kind, nouns in self.nouns.items():
            for noun in nouns:
                out.update(w for w in (noun.sg, noun.pl) if w)
                if kind in ("person", "kin") and not noun.sg.endswith("s"):
                    out.add(noun.sg + "'s")
        for verb in self.verbs:
            out.update(verb[:5])
        for adjs in self.adjectives.values():
            out.update(w for adj in adjs for w in adj if w)
        for table in (self.places, self.times, self.adverbs, self.preps, self.conjunctions):
            out.update(w for phrases in table.values() for phrase in phrases for w in phrase)
        for (name,) in (n for phrases in self.names.values() for n in phrases):
            out.update((name, name + "'s") if not name.endswith("s") else (name,))
        out.update(title for title, _, _ in self.titles)
        out.update(day + "s" for (day,) in self.times["weekday"])
        out.update(w for phrases, _ in self.determiners.values() for p in phrases for w in p)
        out.update(w for p in self.pronouns for w in p[:4])
        out.update(w for key, joined in self.contractions.items() for w in (*key, joined))
        out.discard("-")
        return out


@functools.cache
def _lexicon() -> Lexicon:
    return Lexicon()  # loaded once per process and shared by all generators


@functools.cache
def vocabulary() -> frozenset[str]:
    """Every distinct (normalised, upper-case) word the generator can emit."""
    words = _lexicon().words() | FIXED_WORDS | NUMBER_WORDS
    return frozenset(w.upper() for w in words)


def _needs_an(word: str) -> bool:
    """Whether the article before word is "an": by sound, not by letter."""
    word = word.lower()
    if word.startswith(("hour", "honest", "honor", "heir")):
        return True
    if word.startswith(("uni", "use", "usu", "eu", "one", "once")):
        return False
    return word[:1] in "aeiou"


def render(tokens: list[str]) -> str:
    """Tokens from the grammar as text for the TTS: "a" -> "an" where needed, "I" and the
    first word capitalised, punctuation attached to the word before it."""
    out: list[str] = []
    for i, token in enumerate(tokens):
        if token in (",", ".", "?"):
            out[-1] += token
            continue
        if token == "a" and i + 1 < len(tokens) and _needs_an(tokens[i + 1]):
            token = "an"
        if token == "i" or token.startswith("i'"):
            token = "I" + token[1:]
        out.append(token)
    text = " ".join(out)
    return text[:1].upper() + text[1:]


class SentenceGenerator:
    """Deterministic stream of sentences: the same seed gives the same sentences."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.grammar = Grammar(_lexicon(), self.rng)

    def sentence_pair(self) -> tuple[str, str]:
        """(text for the TTS with , . ? and mixed case, normalised transcript)."""
        while True:
            text = render(sentence_frames.sentence(self.grammar))
            transcript = normalize_transcript(text)
            if MIN_WORDS <= len(transcript.split()) <= MAX_WORDS:
                return text, transcript

    def sentence(self) -> str:
        return self.sentence_pair()[1]
