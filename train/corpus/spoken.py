"""Numbers, years, clock times, dates and places as they are read aloud.

The grammar spells every number out (no digits reach the TTS), by the project's transcript
rules in speechmpq.text, so synthetic and real transcripts agree. SpokenPhrases is the part
of Grammar (grammar.py) that builds counts, amounts, time phrases and place phrases; it
draws from the grammar's random.Random through Grammar's pick/chance/phrase helpers.
"""

from __future__ import annotations

import random

from speechmpq.text import number_to_words as _cardinal
from speechmpq.text import ordinal_to_words as _ordinal

from .words import Noun, WordLists


def number_to_words(n: int) -> str:
    """Spell 0 <= n < 10**9 as read aloud, in lower case, by the project's transcript rules
    (speechmpq.text: no "and", no hyphens), so synthetic and real transcripts agree."""
    if not 0 <= n < 10**9:
        raise ValueError(f"number out of range: {n}")
    return _cardinal(n).lower()


def ordinal_words(n: int) -> str:
    """1 -> first, 23 -> twenty third, 40 -> fortieth."""
    return _ordinal(n).lower()


def year_words(year: int) -> str:
    """Years are read in pairs (nineteen eighty four, eighteen oh five), except 2000-2009."""
    high, low = divmod(year, 100)
    if 2000 <= year < 2010 or not 1000 <= year < 10000:
        return number_to_words(year)
    if low == 0:
        return f"{number_to_words(high)} hundred"
    return f"{number_to_words(high)} {'oh ' if low < 10 else ''}{number_to_words(low)}"


# Every word the number helpers can be asked for: counts up to millions, ordinals up to 100.
NUMBER_WORDS = frozenset(" ".join(
    [number_to_words(n) for n in range(100)] + [ordinal_words(n) for n in range(1, 101)]
    + ["hundred thousand million oh"]).split())


class SpokenPhrases:
    """Mixin for Grammar: counts, amounts, clock times, dates, time and place phrases.
    Needs the host's rng, lists, durations and its pick / chance / phrase helpers."""

    rng: random.Random
    lists: WordLists
    durations: dict[str, Noun]

    def count(self) -> int:
        r = self.rng.random()
        if r < 0.7:
            return self.rng.randint(2, 12)
        if r < 0.9:
            return self.rng.randint(13, 99)
        if r < 0.97:
            return self.rng.randint(1, 9) * 100 + self.pick((0, 0, 50, self.rng.randint(1, 99)))
        return self.rng.randint(1, 40) * 1000 + self.pick((0, 0, 500, self.rng.randint(1, 999)))

    def amount(self, noun: Noun) -> list[str]:
        """'a week' or 'three weeks' with a unit or time noun."""
        if self.chance(0.25):
            return ["a", noun.sg]
        return [*number_to_words(self.count()).split(), noun.pl]

    def clock(self) -> list[str]:
        hour, style = self.rng.randint(1, 12), self.rng.randint(0, 7)
        h, nxt = number_to_words(hour), number_to_words(hour % 12 + 1)
        minute = self.rng.randint(1, 59)
        words = {0: f"{h} o'clock", 1: f"half past {h}", 2: f"a quarter past {h}",
                 3: f"a quarter to {nxt}", 4: f"{number_to_words(minute % 6 * 5 or 10)} past {h}",
                 5: f"{number_to_words(minute % 4 * 5 + 5)} to {nxt}",
                 6: f"{h} {'oh ' if minute < 10 else ''}{number_to_words(minute)}",
                 7: self.pick(("noon", "midnight", h))}[style].split()
        if style in (0, 6) and self.chance(0.3):
            words += ["in", "the", self.phrase(self.lists.times, "daypart")[0]]
        return words

    def date(self) -> list[str]:
        day = ordinal_words(self.rng.randint(1, 28 if self.chance(0.5) else 31)).split()
        return ["on", "the", *day, "of", *self.phrase(self.lists.times, "month")]

    def time_phrase(self, when: str) -> list[str]:
        times, r = self.lists.times, self.rng.random()
        weekday = self.phrase(times, "weekday")
        if when == "perfect":
            if r < 0.4:
                return ["for", *self.amount(self.pick(self.lists.nouns["time"]))]
            if r < 0.7:
                return ["since", *(year_words(self.rng.randint(1900, 2024)).split()
                                   if self.chance(0.5) else ["last", *weekday])]
            return self.pick((["before"], ["many", "times"], ["all", "day"], ["this", "year"]))
        if when == "now" or r < 0.55:
            return self.phrase(times, when)
        if r < 0.65:
            return ["at", *self.clock()]
        if r < 0.72:
            return ["on", *weekday] if when != "habit" else ["on", weekday[0] + "s"]
        if when == "habit":
            return self.pick((["every", *weekday], ["in", "the", *self.phrase(times, "season")]))
        if r < 0.8:
            return self.date() if self.chance(0.6) else ["in", *self.phrase(times, "month")]
        if when == "future":
            soon = self.durations[self.pick(("minute", "hour", "day", "week", "month"))]
            return self.pick((["next", *weekday], ["in", *self.amount(soon)],
                              ["next", *self.phrase(times, "season")]))
        ago = self.durations[self.pick(("hour", "day", "week", "month", "year", "century"))]
        return self.pick((["in", *year_words(self.rng.randint(1750, 2023)).split()],
                          [*self.amount(ago), "ago"],
                          ["last", *weekday], ["last", *self.phrase(times, "season")]))

    def place_name(self) -> list[str]:
        return self.phrase(self.lists.places, self.pick(("city", "city", "country", "region")))

    def place(self, noun: Noun | None = None) -> list[str]:
        noun = noun or self.pick(self.lists.nouns["place"])
        det = ["the"] if self.chance(0.7) else [self.pick(("a", "our", "their", "my", "that"))]
        adjs = self.lists.adjectives.get("place", [])
        return det + ([self.pick(adjs).word] if self.chance(0.25) else []) + [noun.sg]

    def location(self) -> list[str]:
        if self.chance(0.2):
            return [self.pick(("in", "in", "near"))] + self.place_name()
        noun = self.pick(self.lists.nouns["place"])
        prep = [noun.extra[0]] if self.chance(0.6) else self.phrase(self.lists.preps, "loc")
        return prep + self.place(noun)

    def destination(self) -> list[str]:
        r = self.rng.random()
        if r < 0.2:
            return self.phrase(self.lists.adverbs, "dir")
        if r < 0.35:
            return ["to"] + self.place_name()
        noun = self.pick(self.lists.nouns["place"])
        tag = noun.extra[0] if self.chance(0.35) and noun.extra[0] in self.lists.preps else "to"
        return self.phrase(self.lists.preps, tag) + self.place(noun)

    def spot(self) -> list[str]:
        noun = self.pick(self.lists.nouns["furniture"])
        prep = [noun.extra[0]] if self.chance(0.6) else self.phrase(self.lists.preps, "thing")
        return prep + ["the", noun.sg]
