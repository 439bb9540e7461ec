"""The part-of-speech word lists of the corpus text generator (wordlists/*.txt), read into typed rows.

The files hold every inflected form written out (no suffix rules at run time); ``word_lists()``
reads them once per process. grammar.py, spoken.py and sentence_frames.py look words up here;
textgen.py turns their sentences into text. Only the standard library is used.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

WORDLISTS = Path(__file__).with_name("wordlists")


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


class WordLists:
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
def word_lists() -> WordLists:
    """The word lists, loaded once per process and shared by all generators."""
    return WordLists()
