"""Incremental CTC decoding in numpy: greedy best path and prefix beam search.

Both decoders consume logits chunk by chunk and carry a small state across chunk seams, so a
stream decoded in pieces gives exactly the transcript of the same frames decoded in one piece
(greedy: a repeat that straddles a seam is merged; beam: the beams simply continue). A
``preview`` decodes look-ahead frames without changing the state, for the tentative tail of a partial
result. ``CTCDecoder`` states what every decoder promises (``ctc_lm.LexiconLMDecoder`` too).

Token ids become text with the model's vocabulary: the word delimiter is a space, multi-character
specials (``<s>``, ``</s>``, ``<unk>``, ``<pad>``) are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class CTCDecoder(Protocol):
    """What a stream needs from a decoder: logits in, chunk by chunk, text out.

    The state is the decoder's own object (one per stream segment); the decoder itself is shared
    by every stream of a recognizer, so it keeps nothing per stream.
    """

    texts: list[str]  # token id -> the text it adds to a transcript ("" for specials and the blank)

    def initial(self) -> Any:
        """A fresh state: nothing decoded yet."""

    def advance(self, state: Any, logits: np.ndarray) -> None:
        """Consume committed frames ``(T, V)``, updating ``state`` in place."""

    def preview(self, state: Any, lookahead_logits: np.ndarray) -> str:
        """The text with the look-ahead frames ``(T, V)`` decoded too; ``state`` unchanged."""

    def text(self, state: Any) -> str:
        """The text of the committed frames (the best hypothesis for the beam searches)."""

    def describe(self) -> str:
        """One line for a user: which decoder runs (and with which LM)."""


def token_texts(tokens: list[str], word_delimiter: str) -> list[str]:
    """id -> the text it adds to a transcript ("" for specials and the blank)."""
    return [" " if t == word_delimiter else (t if len(t) == 1 else "") for t in tokens]


def collapse_spaces(text: str) -> str:
    return " ".join(text.split())


@dataclass
class GreedyState:
    last_id: int = -1  # argmax of the last frame consumed (-1: none yet), for merging at seams
    pieces: list[str] = field(default_factory=list)  # text of every emitted token


class GreedyDecoder:
    """Best path: argmax per frame, merge repeats, drop blanks."""

    def __init__(self, tokens: list[str], blank_id: int, word_delimiter: str):
        self.texts = token_texts(tokens, word_delimiter)
        self.blank_id = blank_id

    def initial(self) -> GreedyState:
        return GreedyState()

    def _emit(self, last_id: int, ids: np.ndarray) -> tuple[int, list[str]]:
        if ids.size == 0:
            return last_id, []
        previous = np.concatenate([[last_id], ids[:-1]])
        keep = (ids != previous) & (ids != self.blank_id)
        return int(ids[-1]), [self.texts[i] for i in ids[keep].tolist()]

    def advance(self, state: GreedyState, logits: np.ndarray) -> None:
        """Consume committed frames ``(T, V)`` in place."""
        state.last_id, pieces = self._emit(state.last_id, logits.argmax(-1))
        state.pieces.extend(pieces)

    def preview(self, state: GreedyState, logits: np.ndarray) -> str:
        """Text with the look-ahead frames ``(T, V)`` decoded too, leaving ``state`` unchanged."""
        return self.text(state) + "".join(self._emit(state.last_id, logits.argmax(-1))[1])

    def text(self, state: GreedyState) -> str:
        return "".join(state.pieces)

    def describe(self) -> str:
        return "greedy CTC"


@dataclass(frozen=True)
class _Prefix:
    """One hypothesis as a linked list: parent prefix + last token (shared tails, O(1) extension)."""

    parent: _Prefix | None
    token: int
    key: int  # hash of the whole token sequence, for merging equal prefixes

    def extend(self, token: int) -> _Prefix:
        """This prefix followed by ``token``."""
        return _Prefix(self, token, hash((self.key, token)))

    def ids(self) -> list[int]:
        out, node = [], self
        while node is not None and node.token >= 0:
            out.append(node.token)
            node = node.parent
        return out[::-1]


_ROOT = _Prefix(None, -1, 0)


@dataclass
class BeamState:
    # prefix key -> (prefix, log P(ending in blank), log P(ending in a non-blank))
    beams: dict[int, tuple[_Prefix, float, float]] = field(
        default_factory=lambda: {_ROOT.key: (_ROOT, 0.0, -math.inf)})


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Per-frame log probabilities ``(T, V)`` in float64 (the beam searches add many of them)."""
    logits = logits.astype(np.float64)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    return log_probs


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    high = max(a, b)
    return high + math.log1p(math.exp(-abs(a - b)))


class PrefixBeamDecoder:
    """CTC prefix beam search (Hannun et al. 2014) without a language model.

    Per frame only tokens within ``prune_log_prob`` of the frame's best are expanded, so a frame
    costs O(beam_size x a few tokens) Python steps.
    """

    def __init__(self, tokens: list[str], blank_id: int, word_delimiter: str, beam_size: int = 8,
                 prune_log_prob: float = 8.0):
        self.texts = token_texts(tokens, word_delimiter)
        self.blank_id, self.beam_size, self.prune = blank_id, beam_size, prune_log_prob

    def initial(self) -> BeamState:
        return BeamState()

    def _step(self, beams: dict, log_probs: np.ndarray) -> dict:
        candidates = np.flatnonzero(log_probs >= log_probs.max() - self.prune).tolist()
        blank = self.blank_id
        out: dict[int, list] = {}

        def add(prefix: _Prefix, p_blank: float, p_token: float) -> None:
            entry = out.get(prefix.key)
            if entry is None:
                out[prefix.key] = [prefix, p_blank, p_token]
            else:
                entry[1] = _logaddexp(entry[1], p_blank)
                entry[2] = _logaddexp(entry[2], p_token)

        for prefix, p_blank, p_token in beams.values():
            total = _logaddexp(p_blank, p_token)
            for token in candidates:
                p = float(log_probs[token])
                if token == blank:
                    add(prefix, total + p, -math.inf)
                    continue
                extended = prefix.extend(token)
                if token == prefix.token:  # a repeat extends only across a blank
                    add(extended, -math.inf, p_blank + p)
                    add(prefix, -math.inf, p_token + p)
                else:
                    add(extended, -math.inf, total + p)
        ranked = sorted(out.values(), key=lambda e: _logaddexp(e[1], e[2]), reverse=True)
        return {e[0].key: (e[0], e[1], e[2]) for e in ranked[: self.beam_size]}

    def _run(self, beams: dict, logits: np.ndarray) -> dict:
        for frame in log_softmax(logits):
            beams = self._step(beams, frame)
        return beams

    def _best(self, beams: dict) -> str:
        prefix = max(beams.values(), key=lambda e: _logaddexp(e[1], e[2]))[0]
        return "".join(self.texts[i] for i in prefix.ids())

    def advance(self, state: BeamState, logits: np.ndarray) -> None:
        state.beams = self._run(state.beams, logits)

    def preview(self, state: BeamState, logits: np.ndarray) -> str:
        """The best hypothesis with the look-ahead frames decoded too (``state`` unchanged)."""
        return self._best(self._run(state.beams, logits))

    def text(self, state: BeamState) -> str:
        return self._best(state.beams)

    def describe(self) -> str:
        return "beam search, no LM"
