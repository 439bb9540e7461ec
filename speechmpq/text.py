"""Transcript text rules (LibriSpeech style): upper-case A–Z, apostrophe, single spaces.

One normaliser for every transcript in the project: real datasets (speechmpq.datasets) and
the synthetic corpus (speechmpq.train.corpus.textgen) both use normalize_transcript, so their words
agree. Standard library only.
"""

from __future__ import annotations

import re
import unicodedata

_ONES = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE", "TEN",
         "ELEVEN", "TWELVE", "THIRTEEN", "FOURTEEN", "FIFTEEN", "SIXTEEN", "SEVENTEEN",
         "EIGHTEEN", "NINETEEN")  # fmt: skip
_TENS = ("_", "_", "TWENTY", "THIRTY", "FORTY", "FIFTY", "SIXTY", "SEVENTY", "EIGHTY", "NINETY")
_SCALES = ((10**9, "BILLION"), (10**6, "MILLION"), (1000, "THOUSAND"), (100, "HUNDRED"))


def number_to_words(number: int) -> str:
    """Cardinal number in words, no hyphens or "AND":
    1984 → ``ONE THOUSAND NINE HUNDRED EIGHTY FOUR``."""
    if number < 0:
        return "MINUS " + number_to_words(-number)
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    for scale, name in _SCALES:
        if number >= scale:
            head, rest = divmod(number, scale)
            words = number_to_words(head) + " " + name
            return words if rest == 0 else words + " " + number_to_words(rest)
    raise AssertionError("unreachable")


_ORDINAL_IRREGULAR = {"ONE": "FIRST", "TWO": "SECOND", "THREE": "THIRD", "FIVE": "FIFTH",
                      "EIGHT": "EIGHTH", "NINE": "NINTH", "TWELVE": "TWELFTH"}


def ordinal_to_words(number: int) -> str:
    """Ordinal number in words: 21 → ``TWENTY FIRST``, 100 → ``ONE HUNDREDTH``."""
    *head, last = number_to_words(number).split()
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("Y"):
        last = last[:-1] + "IETH"
    else:
        last += "TH"
    return " ".join([*head, last])


# Numbers read as a whole rather than digit run by digit run: 1,200 and 2.5 (not 1 200, 2 5).
_GROUPED = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|\d+\.\d+")


def _grouped_to_words(number: str) -> str:
    """1,200 → ``ONE THOUSAND TWO HUNDRED``, 2.5 → ``TWO POINT FIVE`` (digit by digit after
    the point)."""
    whole, _, fraction = number.replace(",", "").partition(".")
    words = number_to_words(int(whole))
    if fraction:
        words += " POINT " + " ".join(number_to_words(int(digit)) for digit in fraction)
    return f" {words} "


def _strip_accents(text: str) -> str:
    """café → cafe, naïve → naive: compatibility decomposition without combining marks."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize_transcript(text: str) -> str:
    """Any English text → LibriSpeech-style transcript.

    Strips accents (``café`` → ``CAFE``), upper-cases, spells out numbers: grouped and
    decimal ones as a whole (``1,200`` → ``ONE THOUSAND TWO HUNDRED``, ``2.5`` → ``TWO POINT
    FIVE``), ordinals like ``2nd``, and other digit runs. Turns hyphens and dashes into
    spaces, keeps apostrophes inside words (typographic ones are mapped to ``'``), drops
    other punctuation, and collapses whitespace.
    """
    text = _GROUPED.sub(lambda match: _grouped_to_words(match[0]), _strip_accents(text))
    text = text.upper().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"(\d+)(?:ST|ND|RD|TH)\b",
                  lambda match: f" {ordinal_to_words(int(match.group(1)))} ", text)
    text = re.sub(r"\d+", lambda match: f" {number_to_words(int(match.group()))} ", text)
    text = re.sub(r"[^A-Z' ]+", " ", text)
    words = [word.strip("'") for word in text.split()]
    return " ".join(word for word in words if word)
