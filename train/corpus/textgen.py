"""English sentences for a synthetic speech corpus, spoken by a TTS engine (espeak-ng).

A recognizer trained on the corpus also learns its word statistics, so the sentences must
read like English: grammar.py, spoken.py and sentence_frames.py build them from the
part-of-speech word lists in wordlists/ (read by words.py; inflected forms written out in the
files, so no fragile suffix rules at run time).

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

from speechmpq.text import normalize_transcript

from . import sentence_frames
from .grammar import FIXED_WORDS, Grammar
from .spoken import NUMBER_WORDS, number_to_words
from .words import word_lists

__all__ = ["SentenceGenerator", "normalize_transcript", "number_to_words", "vocabulary"]

MIN_WORDS, MAX_WORDS = 4, 25


@functools.cache
def vocabulary() -> frozenset[str]:
    """Every distinct (normalised, upper-case) word the generator can emit."""
    words = word_lists().words() | FIXED_WORDS | NUMBER_WORDS
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
        self.grammar = Grammar(word_lists(), self.rng)

    def sentence_pair(self) -> tuple[str, str]:
        """(text for the TTS with , . ? and mixed case, normalised transcript)."""
        while True:
            text = render(sentence_frames.sentence(self.grammar))
            transcript = normalize_transcript(text)
            if MIN_WORDS <= len(transcript.split()) <= MAX_WORDS:
                return text, transcript

    def sentence(self) -> str:
        return self.sentence_pair()[1]
