"""Word n-gram language models: interpolated modified Kneser-Ney, written as ARPA.

    counts = count_ngrams(sentences, order=3)          # sentences: iterables of words
    model = kneser_ney(counts)                         # {n: {ngram: (log10 p, log10 backoff)}}
    write_arpa(model, "lm.arpa")                       # or "lm.arpa.gz"

The smoothing is Chen & Goodman's interpolated modified Kneser-Ney (1998, section 3), as KenLM's
lmplz and SRILM's ``-kndiscount -interpolate`` build it:

- the highest order uses raw counts; a lower order uses continuation counts N1+(. w_2..w_n), the
  number of distinct words seen before the n-gram, except for n-grams that start with ``<s>``,
  which nothing precedes (raw counts);
- three discounts per order from its count-of-counts n1..n4: Y = n1 / (n1 + 2 n2),
  D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3 (1/2, 1, 3/2 where a count-of-count
  is zero, as on tiny texts);
- p(w | h) = max(c(h w) - D(c), 0) / c(h .) + gamma(h) p(w | h'), with
  gamma(h) = (D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)) / c(h .), and unigrams interpolated with
  the uniform distribution over the vocabulary (``<unk>`` included, ``<s>`` excluded).

In ARPA terms every seen n-gram stores its interpolated probability and every context its gamma as
the back-off weight, so a reader's usual back-off rule gives the same distribution. Standard
library only: a device can build a model for its own vocabulary.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from speechmpq.files import atomic_output

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def count_ngrams(sentences: Iterable[Iterable[str]], order: int) -> dict[int, Counter]:
    """Raw counts of every n-gram up to ``order`` of ``<s> words </s>``."""
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    counts = {n: Counter() for n in range(1, order + 1)}
    for sentence in sentences:
        words = [BOS, *sentence, EOS]
        if len(words) == 2:
            continue
        for n in range(1, order + 1):
            table = counts[n]
            for i in range(1 if n == 1 else 0, len(words) - n + 1):  # <s> is never predicted
                table[tuple(words[i:i + n])] += 1
    return counts


def adjusted_counts(counts: dict[int, Counter]) -> dict[int, Counter]:
    """Raw counts for the highest order and for n-grams starting with <s>; continuation counts
    (distinct left neighbours) for the rest."""
    order = max(counts)
    adjusted = {order: counts[order]}
    for n in range(order - 1, 0, -1):
        left = Counter(ngram[1:] for ngram in counts[n + 1])
        table = Counter()
        for ngram, count in counts[n].items():
            table[ngram] = count if ngram[0] == BOS else left.get(ngram, 0)
        # an n-gram seen only after <s> has no left neighbour but <s>: keep what the text shows
        adjusted[n] = Counter({g: c for g, c in table.items() if c > 0})
    return adjusted


def discounts(table: Counter) -> tuple[float, float, float]:
    """(D1, D2, D3+) from the count-of-counts of one order."""
    n = Counter(min(c, 4) for c in table.values())
    n1, n2, n3, n4 = (n.get(i, 0) for i in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:
        return 0.5, 1.0, 1.5
    y = n1 / (n1 + 2 * n2)
    values = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    return tuple(min(max(d, 0.0), float(i + 1)) for i, d in enumerate(values))


def kneser_ney(
    counts: dict[int, Counter], vocabulary: Iterable[str] = (), min_count: int = 1
) -> dict[int, dict]:
    """{n: {ngram: (log10 p, log10 backoff or None)}} for every seen n-gram (plus <s>, </s>,
    <unk> and any extra ``vocabulary`` words as unigrams).

    ``min_count`` > 1 leaves out highest-order n-grams seen fewer times (a smaller file); their
    contexts' back-off weights are then recomputed so each distribution still sums to one:
    bow(h) = (1 - sum of listed p(w | h)) / (1 - sum of the same words' p(w | h')).
    """
    order = max(counts)
    adjusted = adjusted_counts(counts)
    words = {g[0] for g in counts[1]} | set(vocabulary) | {EOS, UNK}
    words.discard(BOS)
    probabilities: dict[int, dict[tuple, float]] = {}
    gammas: dict[int, dict[tuple, float]] = {}
    for n in range(1, order + 1):
        table = adjusted[n]
        d = discounts(table)
        totals: dict[tuple, float] = defaultdict(float)
        kinds: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
        for ngram, count in table.items():
            totals[ngram[:-1]] += count
            kinds[ngram[:-1]][min(count, 3) - 1] += 1
        gamma = {h: sum(d[i] * kinds[h][i] for i in range(3)) / totals[h] for h in totals}
        lower = probabilities.get(n - 1)
        current = {}
        for ngram, count in table.items():
            h = ngram[:-1]
            backoff = gamma[h] * (1.0 / len(words) if n == 1 else lower[ngram[1:]])
            current[ngram] = max(count - d[min(count, 3) - 1], 0.0) / totals[h] + backoff
        if n == 1:
            for word in words:  # unseen vocabulary words: the uniform share alone
                current.setdefault((word,), gamma[()] / len(words))
        probabilities[n], gammas[n] = current, gamma
    if min_count > 1 and order > 1:
        kept = {g: p for g, p in probabilities[order].items() if counts[order][g] >= min_count}
        listed, lower_listed = defaultdict(float), defaultdict(float)
        for ngram, p in kept.items():
            listed[ngram[:-1]] += p
            lower_listed[ngram[:-1]] += probabilities[order - 1][ngram[1:]]
        gammas[order] = {h: (1.0 - listed[h]) / max(1.0 - lower_listed[h], 1e-12) if h in listed else 1.0
                         for h in gammas[order]}
        probabilities[order] = kept
    model = {}
    for n in range(1, order + 1):
        entries = {}
        for ngram, p in probabilities[n].items():
            bow = gammas[n + 1].get(ngram) if n < order else None
            entries[ngram] = (math.log10(p), None if bow is None else math.log10(bow) if bow > 0 else -99.0)
        if n == 1:
            bos_bow = gammas[2].get((BOS,)) if order > 1 else None
            entries[(BOS,)] = (-99.0, None if bos_bow is None else math.log10(bos_bow))
        model[n] = entries
    return model


def _format(value: float) -> str:
    return f"{value:.6f}"


def write_arpa(model: dict[int, dict], path: str | Path) -> Path:
    """Write ``model`` (``kneser_ney``'s output) as an ARPA file; ``.gz`` compresses. Atomic."""
    path = Path(path)
    lines = ["", "\\data\\"] + [f"ngram {n}={len(model[n])}" for n in sorted(model)]
    for n in sorted(model):
        lines += ["", f"\\{n}-grams:"]
        for ngram in sorted(model[n]):
            logp, bow = model[n][ngram]
            line = f"{_format(logp)}\t{' '.join(ngram)}"
            lines.append(line if bow is None else f"{line}\t{_format(bow)}")
    lines += ["", "\\end\\", ""]
    data = "\n".join(lines).encode()
    with atomic_output(path) as tmp:
        if path.suffix == ".gz":
            with gzip.GzipFile(tmp, "wb", mtime=0) as handle:
                handle.write(data)
        else:
            Path(tmp).write_bytes(data)
    return path


def lexicon_lines(words: Iterable[str]) -> list[str]:
    """flashlight / torchaudio lexicon lines: ``WORD W O R D |`` (the spelling, then the delimiter)."""
    return [f"{w}\t{' '.join(w)} |" for w in sorted(set(words)) if w not in (BOS, EOS, UNK)]
