"""Word n-gram language model (ARPA) and pronunciation lexicon for CTC decoding, in numpy.

``NGramLM`` reads a standard ARPA file (plain or ``.gz``: what ``speechmpq lm``, KenLM's lmplz or
SRILM write) into sorted integer keys, one array per order (about 12 bytes an n-gram instead of a
Python dict's ~100), and scores with the standard back-off rule:

    p(w | w1..wk) = p*(w1..wk w)                        if the n-gram is listed
                  = bow(w1..wk) * p(w | w2..wk)        otherwise (bow = 1 when w1..wk is not listed)

A state is the tuple of word ids the next word is conditioned on, cut to its longest suffix that
the model lists as a context, so equal histories merge. Scores are natural logs.

``Lexicon`` maps words to the model's character tokens (flashlight / torchaudio format, one
``WORD W O R D |`` line each) and arranges the spellings in a trie; each node carries the best
unigram log probability of the words below it (flashlight's "smearing"), the look-ahead a beam
search adds to a partly spelled word.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from speechmpq.errors import ModelError

LOG10 = math.log(10.0)
BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def _open_text(path: Path):
    try:
        with open(path, "rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rt", encoding="utf-8") if gzipped else open(path, encoding="utf-8")
    except OSError as error:
        raise ModelError(f"{path}: cannot read ({error.strerror or error})") from None


class NGramLM:
    """An ARPA back-off model: ``score(state, word_id) -> (ln p, next state)``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        counts, sections = self._parse(self.path)
        self.order = max(counts)
        words = [ngram[0] for ngram, _, _ in sections[1]]
        self.words = words
        self.ids = {w: i for i, w in enumerate(words)}
        for special in (EOS, UNK):
            if special not in self.ids:  # a model without <unk> still scores unknown words (-99)
                self.ids[special] = len(self.words)
                self.words.append(special)
                sections[1].append(((special,), -99.0, None))
        self.base = len(self.words)
        if self.base ** self.order >= 2**62:
            raise ModelError(f"{self.path}: {self.base} words at order {self.order} do not fit 64-bit keys")
        self.bos, self.eos, self.unk = self.ids.get(BOS, -1), self.ids[EOS], self.ids[UNK]
        self._keys, self._logp, self._bow = {}, {}, {}
        for n, entries in sections.items():
            keys = np.empty(len(entries), np.int64)
            logp = np.empty(len(entries), np.float32)
            bow = np.zeros(len(entries), np.float32)
            for i, (ngram, p, b) in enumerate(entries):
                try:
                    keys[i] = self._key(tuple(self.ids[w] for w in ngram))
                except KeyError as error:
                    raise ModelError(f"{self.path}: {n}-gram {' '.join(ngram)} has a word missing from "
                                     f"the unigrams ({error.args[0]})") from None
                logp[i], bow[i] = p * LOG10, (b or 0.0) * LOG10
            order = np.argsort(keys, kind="stable")
            self._keys[n], self._logp[n], self._bow[n] = keys[order], logp[order], bow[order]
        self.ngrams = {n: len(entries) for n, entries in sections.items()}
        self._memo: dict[tuple, tuple[float, tuple]] = {}

    @staticmethod
    def _parse(path: Path) -> tuple[dict[int, int], dict[int, list]]:
        counts: dict[int, int] = {}
        sections: dict[int, list] = {}
        current = None
        with _open_text(path) as handle:
            try:
                for number, line in enumerate(handle, 1):
                    line = line.strip()
                    if not line:
                        continue
                    if line.startswith("\\"):
                        if line == "\\end\\":
                            break
                        if line.endswith("-grams:"):
                            current = int(line[1:].split("-")[0])
                            sections[current] = []
                        continue
                    if line.startswith("ngram ") and current is None:
                        n, count = line[6:].split("=")
                        counts[int(n)] = int(count)
                        continue
                    if current is None:
                        continue
                    fields = line.split()
                    if len(fields) not in (current + 1, current + 2):
                        raise ModelError(f"{path}:{number}: expected a {current}-gram line, "
                                         f"got {line[:60]!r}")
                    bow = float(fields[current + 1]) if len(fields) == current + 2 else None
                    sections[current].append((tuple(fields[1:current + 1]), float(fields[0]), bow))
            except (UnicodeDecodeError, ValueError, EOFError, OSError) as error:
                raise ModelError(f"{path}: not a readable ARPA language model ({error})") from None
        if not counts or 1 not in sections or sorted(sections) != list(range(1, max(sections) + 1)):
            raise ModelError(f"{path}: not an ARPA language model (no \\data\\ header or n-gram sections)")
        for n, count in counts.items():
            if len(sections.get(n, ())) != count:
                raise ModelError(f"{path}: the header announces {count} {n}-grams, the file has "
                                 f"{len(sections.get(n, ()))}")
        return counts, sections

    def _key(self, ids: tuple[int, ...]) -> int:
        key = 0
        for i in ids:
            key = key * self.base + i + 1  # +1: no n-gram key equals a shorter one's
        return key

    def _find(self, ids: tuple[int, ...]) -> int:
        keys = self._keys[len(ids)]
        key = self._key(ids)
        index = int(np.searchsorted(keys, key))
        return index if index < keys.size and keys[index] == key else -1

    def word_id(self, word: str) -> int:
        return self.ids.get(word, self.unk)

    def initial_state(self) -> tuple[int, ...]:
        return (self.bos,) if self.bos >= 0 and self.order > 1 else ()

    def score(self, state: tuple[int, ...], word: int) -> tuple[float, tuple[int, ...]]:
        """(ln p(word | state), the state after it)."""
        memo = self._memo.get((state, word))
        if memo is not None:
            return memo
        total, context = 0.0, state
        while True:
            ngram = (*context, word)
            index = self._find(ngram)
            if index >= 0:
                total += float(self._logp[len(ngram)][index])
                break
            if not context:  # cannot happen for ids from this model: every word is a unigram
                total += -99.0 * LOG10
                break
            index = self._find(context)
            if index >= 0:
                total += float(self._bow[len(context)][index])
            context = context[1:]
        after = (*state, word)[-(self.order - 1):] if self.order > 1 else ()
        while after and self._find(after) < 0:  # the longest suffix listed as a context
            after = after[1:]
        if len(self._memo) > 200_000:
            self._memo.clear()
        self._memo[(state, word)] = (total, after)
        return total, after


class Lexicon:
    """Word spellings in the model's tokens, as a trie with smeared unigram look-ahead."""

    def __init__(self, spellings: dict[str, list[int]], lm: NGramLM):
        if not spellings:
            raise ModelError("the lexicon has no words")
        self.children: list[dict[int, int]] = [{}]
        self.word: list[int] = [-1]  # LM word id of the word ending at each node, -1 if none
        self.text: list[str] = [""]
        for word, tokens in spellings.items():
            node = 0
            for token in tokens:
                child = self.children[node].get(token)
                if child is None:
                    child = len(self.children)
                    self.children[node][token] = child
                    self.children.append({})
                    self.word.append(-1)
                    self.text.append("")
                node = child
            self.word[node], self.text[node] = lm.word_id(word), word
        best = np.full(len(self.children), -np.inf)
        for node in range(len(self.children) - 1, -1, -1):  # children have higher ids than parents
            if self.word[node] >= 0:
                best[node] = lm.score((), self.word[node])[0]
            for child in self.children[node].values():
                best[node] = max(best[node], best[child])
        best[0] = 0.0
        self.smear = best.tolist()

    @classmethod
    def from_words(cls, words, tokens: list[str], lm: NGramLM) -> Lexicon:
        """Spell each word letter by letter in ``tokens``; words with other characters are skipped."""
        index = {t: i for i, t in enumerate(tokens) if len(t) == 1}
        spellings = {}
        for word in words:
            if word in (BOS, EOS, UNK) or not word:
                continue
            ids = [index.get(ch) for ch in word]
            if None not in ids:
                spellings[word] = ids
        return cls(spellings, lm)

    @classmethod
    def read(cls, path: str | Path, tokens: list[str], word_delimiter: str, lm: NGramLM) -> Lexicon:
        """``WORD T O K E N S [|]`` per line (tab or space after the word)."""
        index = {t: i for i, t in enumerate(tokens)}
        spellings = {}
        with _open_text(Path(path)) as handle:
            try:
                for number, line in enumerate(handle, 1):
                    fields = line.split()
                    if not fields:
                        continue
                    spelling = fields[1:]
                    if spelling and spelling[-1] == word_delimiter:
                        spelling = spelling[:-1]
                    if not spelling:
                        raise ModelError(f"{path}:{number}: {fields[0]!r} has no spelling")
                    unknown = [t for t in spelling if t not in index]
                    if unknown:
                        raise ModelError(f"{path}:{number}: token {unknown[0]!r} is not in the model's "
                                         f"vocabulary")
                    spellings[fields[0]] = [index[t] for t in spelling]
            except UnicodeDecodeError as error:
                raise ModelError(f"{path}: not a text lexicon ({error})") from None
        return cls(spellings, lm)
