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
import zipfile
from array import array
from pathlib import Path

import numpy as np

from speechmpq.errors import ModelError

LOG10 = math.log(10.0)
BOS, EOS, UNK = "<s>", "</s>", "<unk>"
NPZ_FORMAT = 1  # NGramLM.save_arrays


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
        if self.path.name.endswith(".npz"):
            self._load_arrays()
        else:
            self._load()
        self._ready()

    @classmethod
    def from_ngrams(cls, words: list[str], ngrams: dict, source: str | Path) -> NGramLM:
        """A model from arrays already in memory: ``ngrams[n] = (ids, log10 p, log10 bow or None)``,
        ``ids`` an integer array ``[count, n]`` of indices into ``words`` (what ``sphinx_lm`` reads out
        of pocketsphinx's binary trie), without an ARPA text round trip."""
        lm = cls.__new__(cls)
        lm.path = Path(source)
        lm.words = list(words)
        lm.ids = {word: index for index, word in enumerate(lm.words)}
        lm.base = len(lm.words) + 3  # room for </s> and <unk> if missing, as the ARPA reader
        if not ngrams or sorted(ngrams) != list(range(1, len(ngrams) + 1)):
            raise ModelError(f"{source}: n-gram orders {sorted(ngrams)} are not 1..N")
        if lm.base ** len(ngrams) >= 2**62:
            raise ModelError(f"{source}: {len(words)} words at order {len(ngrams)} do not fit 64-bit keys")
        lm._keys, lm._logp, lm._bow = {}, {}, {}
        for n, (ids, logp, bow) in ngrams.items():
            keys = np.zeros(len(ids), np.int64)
            for column in range(n):
                keys = keys * lm.base + ids[:, column].astype(np.int64) + 1
            lm._keys[n] = keys
            lm._logp[n] = (np.asarray(logp, np.float64) * LOG10).astype(np.float32)
            lm._bow[n] = (np.zeros(len(ids), np.float32) if bow is None
                          else (np.asarray(bow, np.float64) * LOG10).astype(np.float32))
        lm._complete()
        lm._ready()
        return lm

    def _ready(self) -> None:
        self.bos, self.eos, self.unk = self.ids.get(BOS, -1), self.ids[EOS], self.ids[UNK]
        self._memo: dict[tuple, tuple[float, tuple]] = {}

    def _load(self) -> None:
        """One pass over the file into arrays sized from the header, filled in blocks, so the peak
        memory is the arrays' and not a Python object per n-gram."""
        path, counts, current = self.path, {}, None
        self.words, self.ids = [], {}
        self._keys, self._logp, self._bow = {}, {}, {}
        with _open_text(path) as handle:
            try:
                marker = None
                for line in handle:
                    fields = line.split()
                    if fields and fields[0] == "ngram":
                        n, count = fields[1].split("=")
                        counts[int(n)] = int(count)
                    elif fields and fields[0].endswith("-grams:"):
                        marker = fields[0]
                        break
                while marker is not None and marker.endswith("-grams:"):
                    current = int(marker[1:].split("-")[0])
                    if current not in counts or (current > 1 and current - 1 not in self._keys):
                        raise ModelError(f"{path}: a {current}-gram section the header does not announce")
                    if current == 1:
                        self.base = counts[1] + 3  # room for </s> and <unk> if missing
                        if self.base ** max(counts) >= 2**62:
                            raise ModelError(f"{path}: {counts[1]} words at order {max(counts)} do not fit "
                                             "64-bit keys")
                    marker = self._read_section(handle, current, counts[current])
                if marker == "\\end\\":
                    current = None
            except (UnicodeDecodeError, ValueError, EOFError, OSError) as error:
                raise ModelError(f"{path}: not a readable ARPA language model ({error})") from None
        if not counts or 1 not in self._keys or current is not None or sorted(self._keys) != sorted(counts):
            raise ModelError(f"{path}: not a complete ARPA language model (\\data\\ header, every "
                             "announced n-gram section and \\end\\)")
        self._complete()

    def _complete(self) -> None:
        """Words and n-gram arrays read: add </s> and <unk> if missing, sort the keys."""
        self.order = max(self._keys)
        extra = [w for w in (EOS, UNK) if w not in self.ids]
        for word in extra:  # a model without <unk> still scores unknown words (-99)
            self.ids[word] = len(self.words)
            self.words.append(word)
        if extra:
            self._keys[1] = np.concatenate([self._keys[1], [self.ids[w] + 1 for w in extra]])
            self._logp[1] = np.concatenate([self._logp[1], np.full(len(extra), -99 * LOG10, np.float32)])
            self._bow[1] = np.concatenate([self._bow[1], np.zeros(len(extra), np.float32)])
        del self._bow[self.order]  # the top order backs off from nothing
        for n in self._keys:
            order = np.argsort(self._keys[n], kind="stable")
            self._keys[n], self._logp[n] = self._keys[n][order], self._logp[n][order]
            if n in self._bow:
                self._bow[n] = self._bow[n][order]
        self.ngrams = {n: int(keys.size) for n, keys in self._keys.items()}

    def save_arrays(self, path: str | Path) -> Path:
        """Write the loaded model as ``.npz`` arrays (words, and per order sorted keys, ln p, ln bow):
        the same model, loaded without parsing text (a general English trigram: seconds instead of a
        minute). Written beside and renamed, so a reader never sees half a file."""
        from speechmpq.files import atomic_output

        arrays = {"format": np.array([NPZ_FORMAT]), "base": np.array([self.base], np.int64),
                  "words": np.array(self.words)}
        for n in self._keys:
            arrays |= {f"keys{n}": self._keys[n], f"logp{n}": self._logp[n]}
        arrays |= {f"bow{n}": bow for n, bow in self._bow.items()}
        with atomic_output(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        return Path(path)

    def _load_arrays(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as arrays:
                if "format" not in arrays or int(arrays["format"][0]) != NPZ_FORMAT:
                    raise ModelError(f"{self.path}: not a speechmpq LM array file (format {NPZ_FORMAT})")
                self.words = [str(w) for w in arrays["words"]]
                self.base = int(arrays["base"][0])
                orders = sorted(int(k[4:]) for k in arrays.files if k.startswith("keys"))
                self._keys = {n: arrays[f"keys{n}"] for n in orders}
                self._logp = {n: arrays[f"logp{n}"] for n in orders}
                self._bow = {n: arrays[f"bow{n}"] for n in orders[:-1]}  # the top order has none
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise ModelError(f"{self.path}: not a readable LM array file ({error})") from None
        if not orders or orders != list(range(1, len(orders) + 1)) or not {EOS, UNK} <= set(self.words):
            raise ModelError(f"{self.path}: an LM array file without its n-gram orders, </s> or <unk>")
        self.ids = {word: index for index, word in enumerate(self.words)}
        self.order = orders[-1]
        self.ngrams = {n: int(keys.size) for n, keys in self._keys.items()}

    def _read_section(self, handle, n: int, size: int) -> str | None:
        """Read the lines of the n-gram section (its header already read); returns the next
        section marker (None at the end of the file)."""
        keys = np.empty(size, np.int64)
        logp = np.empty(size, np.float32)
        bow = np.zeros(size, np.float32)
        ids, words, base = self.ids, self.words, getattr(self, "base", 0)
        block_keys, block_logp, block_bow = [], [], []
        filled, marker = 0, None

        def flush() -> None:
            nonlocal filled
            end = filled + len(block_keys)
            keys[filled:end] = block_keys
            logp[filled:end] = np.array(block_logp, dtype=np.float64) * LOG10
            for offset, value in block_bow:
                bow[filled + offset] = float(value) * LOG10
            filled = end
            block_keys.clear(), block_logp.clear(), block_bow.clear()

        for line in handle:
            fields = line.split()
            if not fields:
                continue
            if fields[0][0] == "\\":
                marker = fields[0]
                break
            if len(fields) not in (n + 1, n + 2) or filled + len(block_keys) >= size:
                raise ModelError(f"{self.path}: a {n}-gram line that does not fit: {line.strip()[:60]!r} "
                                 f"(the header announces {size} {n}-grams)")
            if n == 1:
                ids[fields[1]] = len(words)
                words.append(fields[1])
                key = len(words)
            else:
                key = 0
                for word in fields[1:n + 1]:
                    index = ids.get(word)
                    if index is None:
                        raise ModelError(f"{self.path}: {word!r} in a {n}-gram is not among the unigrams")
                    key = key * base + index + 1
            if len(fields) == n + 2:
                block_bow.append((len(block_keys), fields[n + 1]))
            block_keys.append(key)
            block_logp.append(fields[0])
            if len(block_keys) == 65536:
                flush()
        flush()
        if filled != size:
            raise ModelError(f"{self.path}: the header announces {size} {n}-grams, the file has {filled}")
        self._keys[n], self._logp[n], self._bow[n] = keys, logp, bow
        return marker

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

    def unigram_logp(self) -> np.ndarray:
        """ln p(word) of every word id (what ``score((), word)`` gives), as one array."""
        out = np.full(len(self.words), -99.0 * LOG10)
        out[self._keys[1] - 1] = self._logp[1]
        return out

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
    """Word spellings in the model's tokens, as a trie with smeared unigram look-ahead.

    The trie is stored flat, like a CSR matrix: the edges leaving node ``n`` are ``offsets[n]`` to
    ``offsets[n + 1]``, their tokens one character each in the string ``labels`` (so a child is found
    by ``str.find`` in C) and their nodes in ``children``. A general English lexicon (72k words, 172k
    nodes) takes ~3 MB this way, where a dict per node took ~80 MB and one edge dict ~60 MB with
    its build."""

    def __init__(self, spellings: dict[str, list[int]], lm: NGramLM):
        if not spellings:
            raise ModelError("the lexicon has no words")
        # Sorted spellings share their prefixes with the previous one, so the trie is built in one pass
        # keeping only the current path; nodes are numbered in depth-first order (children after
        # parents). Python's sort is stable: of two words spelled alike, the later one ends the node.
        items = sorted(spellings.items(), key=lambda item: item[1])
        parents, tokens, words, depths = array("i"), array("i"), array("i", [-1]), array("i", [0])
        path, previous = [0], []
        for word, spelling in items:
            common = 0
            for a, b in zip(previous, spelling, strict=False):
                if a != b:
                    break
                common += 1
            del path[common + 1:]
            for token in spelling[common:]:
                parents.append(path[-1])
                tokens.append(token)
                words.append(-1)
                depths.append(len(path))
                path.append(len(words) - 1)
            words[path[-1]] = lm.word_id(word)
            previous = spelling
        self.nodes = len(words)
        parent, token = np.frombuffer(parents, np.int32), np.frombuffer(tokens, np.int32)
        order = np.lexsort((token, parent))  # edges grouped by parent, tokens ascending
        self.offsets = array("i", np.searchsorted(parent[order], np.arange(self.nodes + 1)).astype(np.int32)
                             .tobytes())
        self.labels = "".join(map(chr, token[order].tolist()))
        # edge i (in creation order) made node i + 1
        self.children = array("i", (order + 1).astype(np.int32).tobytes())
        self.word = words  # LM word id of the word ending at each node, -1 if none
        self.smear = array("d", self._smear(lm, np.frombuffer(words, np.int32), parent,
                                            np.frombuffer(depths, np.int32)).tobytes())
        self.chars = [chr(t) for t in range(int(token.max()) + 1)]  # token -> its label character

    @staticmethod
    def _smear(lm: NGramLM, words: np.ndarray, parent: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Each node's best unigram ln p over the words ending at or below it (0 at the root)."""
        best = np.full(words.size, -np.inf)
        ends = np.flatnonzero(words >= 0)
        best[ends] = lm.unigram_logp()[words[ends]]
        for level in range(int(depth.max()), 0, -1):
            nodes = np.flatnonzero(depth == level)
            np.maximum.at(best, parent[nodes - 1], best[nodes])
        best[0] = 0.0
        return best

    def child(self, node: int, token: int) -> int:
        """The node spelled by ``token`` after ``node``; -1 if no word goes on that way."""
        if token >= len(self.chars):
            return -1
        edge = self.labels.find(self.chars[token], self.offsets[node], self.offsets[node + 1])
        return self.children[edge] if edge >= 0 else -1

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
