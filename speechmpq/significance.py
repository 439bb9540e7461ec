"""Is system B's WER significantly different from system A's? (numpy only)

``mapsswe``: the matched-pairs sentence-segment word error test of NIST's ``sc_stats`` (Gillick &
Cox, 1989; Pallett et al., 1990). Each utterance is cut into segments bounded by runs of at least
``buffer`` consecutive reference words that both systems recognised correctly (and, inside the run,
neither inserted a word); utterance ends are boundaries too. Only segments where at least one system
made an error are kept. With Z_i = errors_B(i) − errors_A(i) over the n segments,
W = mean(Z) / (std(Z, ddof=1) / sqrt(n)) is standard normal under "no difference", and the
two-sided p-value is 2·(1 − Φ(|W|)). Where every segment differs by the same non-zero amount the
variance is 0 and W is undefined: SCTK's sc_stats then reports Z = 0 and p = 1, which calls a
uniformly worse system "no different" (40 segments, one more error each: p = 1). Here that case takes
the exact two-sided sign test instead, p = 2 · 0.5^n (capped at 1): 2^-39 for those 40 segments.

Every p is two-sided; a caller asking "significantly worse" at alpha 0.05 (p < alpha and a positive
mean difference) tests at a one-sided level of alpha / 2 = 0.025.

``bootstrap_wer_difference``: a percentile interval of WER_B − WER_A from resampling utterances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Alignment:
    correct: list[bool]  # per reference word: recognised correctly
    insertions: list[int]  # per gap 0..R (gap j lies before reference word j): inserted words


def align_words(reference: list[str], hypothesis: list[str]) -> Alignment:
    """Levenshtein alignment (unit costs) of hypothesis words against reference words."""
    rows, cols = len(reference) + 1, len(hypothesis) + 1
    cost = np.zeros((rows, cols), dtype=np.int64)
    cost[:, 0] = np.arange(rows)
    cost[0, :] = np.arange(cols)
    for i in range(1, rows):
        for j in range(1, cols):
            diagonal = cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1])
            cost[i, j] = min(diagonal, cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    correct = [False] * len(reference)
    insertions = [0] * (len(reference) + 1)
    i, j = len(reference), len(hypothesis)
    while i > 0 or j > 0:  # backtrace, preferring matches/substitutions, then deletions
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            correct[i - 1] = reference[i - 1] == hypothesis[j - 1]
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            insertions[i] += 1
            j -= 1
    return Alignment(correct, insertions)


def segment_errors(reference: str, hyp_a: str, hyp_b: str, buffer: int = 2) -> list[tuple[int, int]]:
    """(errors of A, errors of B) for each MAPSSWE segment of one utterance."""
    ref = reference.split()
    a, b = align_words(ref, hyp_a.split()), align_words(ref, hyp_b.split())
    anchor = [ca and cb for ca, cb in zip(a.correct, b.correct, strict=True)]
    # A word is a boundary word if it sits in a run of >= buffer anchors with no insertion inside.
    boundary = [False] * len(ref)
    start = 0
    while start < len(ref):
        if not anchor[start]:
            start += 1
            continue
        end = start
        while end + 1 < len(ref) and anchor[end + 1] and not (a.insertions[end + 1] or b.insertions[end + 1]):
            end += 1
        if end - start + 1 >= buffer:
            for k in range(start, end + 1):
                boundary[k] = True
        start = end + 1
    segments, errors_a, errors_b = [], 0, 0
    for k in range(len(ref) + 1):
        errors_a += a.insertions[k]
        errors_b += b.insertions[k]
        if k == len(ref) or boundary[k]:
            if errors_a or errors_b:
                segments.append((errors_a, errors_b))
            errors_a = errors_b = 0
            continue
        errors_a += not a.correct[k]
        errors_b += not b.correct[k]
    return segments


def _normal_two_sided_p(w: float) -> float:
    return math.erfc(abs(w) / math.sqrt(2.0))


def mapsswe(references: list[str], hyps_a: list[str], hyps_b: list[str], buffer: int = 2,
            alpha: float = 0.05) -> dict:
    """MAPSSWE over utterances; positive mean difference means B makes more errors than A."""
    segments = [s for ref, ha, hb in zip(references, hyps_a, hyps_b, strict=True)
                for s in segment_errors(ref, ha, hb, buffer)]
    z = np.array([eb - ea for ea, eb in segments], dtype=np.float64)
    n = int(z.size)
    result = {"segments": n, "errors_a": int(sum(s[0] for s in segments)),
              "errors_b": int(sum(s[1] for s in segments)), "mean_difference": 0.0,
              "w": 0.0, "p_value": 1.0, "alpha": alpha, "sides": 2}
    if n >= 1:
        result["mean_difference"] = float(z.mean())
    if n >= 2 and np.any(z != z[0]):
        std = float(z.std(ddof=1))
        result["w"] = result["mean_difference"] / (std / math.sqrt(n))
        result["p_value"] = _normal_two_sided_p(result["w"])
    elif n >= 1 and z[0] != 0:
        # zero variance, every segment the same non-zero difference: the exact sign test (not
        # sc_stats' p = 1, which would call a uniformly worse system no different)
        result["p_value"] = min(1.0, 2.0 * 0.5 ** n)
        result["test"] = "sign"
    result["significant"] = result["p_value"] < alpha
    return result


def bootstrap_wer_difference(ref_words: np.ndarray, errors_a: np.ndarray, errors_b: np.ndarray,
                             samples: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile interval of WER_B − WER_A by resampling utterances with replacement."""
    ref_words, errors_a, errors_b = (np.asarray(x, dtype=np.float64)
                                     for x in (ref_words, errors_a, errors_b))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, ref_words.size, size=(samples, ref_words.size))
    words = ref_words[picks].sum(axis=1)
    diffs = (errors_b[picks].sum(axis=1) - errors_a[picks].sum(axis=1)) / np.maximum(words, 1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return {"wer_difference": float((errors_b.sum() - errors_a.sum()) / max(ref_words.sum(), 1)),
            "interval": [float(low), float(high)], "level": level, "samples": samples}
