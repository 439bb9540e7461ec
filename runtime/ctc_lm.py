"""Lexicon-constrained CTC prefix beam search with a word n-gram language model, in numpy.

The search follows flashlight's lexicon decoder (the one torchaudio's ``ctc_decoder`` wraps): a
hypothesis spells words through the lexicon trie, so only lexicon words can be formed; when the
word delimiter closes a word, the word's LM log probability times ``lm_weight`` plus
``word_score`` is added; while a word is still being spelled, the best unigram log probability of
the words it can still become (the trie node's "smeared" score) stands in for it, so that partial
words compete fairly during pruning. CTC probabilities are the prefix-search ones (Hannun et al.
2014: blank / non-blank ending, repeats extend only across a blank). A delimiter where no word is
open (at the start, after another delimiter) counts as a blank, so extra spaces never split
hypotheses.

    score(h) = ln P_ctc(h) + lm_weight * (ln P_lm(closed words) + smear(open word)) + word_score * words

Why hand-written rather than a library: the runtime must stay numpy + onnxruntime on x86 and
aarch64 wheels; pyctcdecode decodes whole utterances only and needs KenLM (a C++ build, no wheels)
for n-grams, torchaudio's decoder needs torch, sherpa-onnx brings its own model runtime. This one
carries its beams across chunk seams like ``ctc.PrefixBeamDecoder``, so a stream decoded in any
pieces gives exactly the whole-input result (tested), and ends each hypothesis with ``</s>`` when
the text is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from speechmpq.runtime.ctc import _ROOT, _logaddexp, log_softmax, token_texts
from speechmpq.runtime.lm import Lexicon, NGramLM

NEG = -math.inf


@dataclass
class LMBeamState:
    # prefix key -> [prefix, ln P(ends in blank), ln P(ends in non-blank), trie node of the open
    # word (0: none open), LM state, weighted LM + word score of the closed words]
    beams: dict[int, list] = field(default_factory=dict)


class LexiconLMDecoder:
    """Streaming word-level CTC decoding with a lexicon and an n-gram LM (a ``ctc.CTCDecoder`` like
    the other decoders)."""

    def __init__(self, tokens: list[str], blank_id: int, word_delimiter: str, lm: NGramLM,
                 lexicon: Lexicon, beam_size: int = 24, lm_weight: float = 0.65, word_score: float = 0.5,
                 prune_log_prob: float = 5.0, beam_threshold: float = 20.0, source: str = "LM"):
        self.source = source  # where the LM came from, for messages
        self.texts = token_texts(tokens, word_delimiter)
        self.blank_id = blank_id
        self.delimiter_id = tokens.index(word_delimiter)
        self.lm, self.lexicon = lm, lexicon
        self.beam_size, self.lm_weight, self.word_score = beam_size, lm_weight, word_score
        # per frame only tokens within prune_log_prob of the frame's best are tried: 5 measured about
        # 2x faster than 8 for 1.5-2 points of dev WER (results/lm_tune.md)
        self.prune, self.threshold = prune_log_prob, beam_threshold

    def initial(self) -> LMBeamState:
        return LMBeamState({_ROOT.key: [_ROOT, 0.0, NEG, 0, self.lm.initial_state(), 0.0]})

    def _rank(self, entry: list) -> float:
        return _logaddexp(entry[1], entry[2]) + entry[5] + self.lm_weight * self.lexicon.smear[entry[3]]

    def _step(self, beams: dict, log_probs: np.ndarray, beam_size: int,
              candidates: list[int] | None = None) -> dict:
        if candidates is None:
            candidates = np.flatnonzero(log_probs >= log_probs.max() - self.prune).tolist()
        blank, delimiter = self.blank_id, self.delimiter_id
        if candidates == [blank]:  # most frames: every hypothesis just ends in blank
            p = float(log_probs[blank])
            return {k: [e[0], _logaddexp(e[1], e[2]) + p, NEG, e[3], e[4], e[5]] for k, e in beams.items()}
        lexicon = self.lexicon
        offsets, labels, children, chars, word_of = (lexicon.offsets, lexicon.labels, lexicon.children,
                                                     lexicon.chars, lexicon.word)
        labelled = len(chars)
        out: dict[int, list] = {}

        def add(prefix, node, state, lm_score, p_blank, p_token) -> None:
            entry = out.get(prefix.key)
            if entry is None:
                out[prefix.key] = [prefix, p_blank, p_token, node, state, lm_score]
            else:
                entry[1] = _logaddexp(entry[1], p_blank)
                entry[2] = _logaddexp(entry[2], p_token)

        for prefix, p_blank, p_token, node, state, lm_score in beams.values():
            total = _logaddexp(p_blank, p_token)
            for token in candidates:
                p = float(log_probs[token])
                if token == blank or (token == delimiter and node == 0):
                    add(prefix, node, state, lm_score, total + p, NEG)
                    continue
                if token == delimiter:  # closes the open word, if it is one
                    word = word_of[node]
                    if word < 0:
                        continue
                    logp, after = self.lm.score(state, word)
                    closed = prefix.extend(token)
                    add(closed, 0, after, lm_score + self.lm_weight * logp + self.word_score, NEG, total + p)
                    continue
                # the trie's child by this token (Lexicon.child, inlined: the search's inner loop)
                edge = labels.find(chars[token], offsets[node], offsets[node + 1]) if token < labelled else -1
                if token == prefix.token:  # a repeat: stays merged, or extends across a blank
                    add(prefix, node, state, lm_score, NEG, p_token + p)
                    if edge >= 0 and p_blank > NEG:
                        add(prefix.extend(token), children[edge], state, lm_score, NEG, p_blank + p)
                elif edge >= 0:
                    add(prefix.extend(token), children[edge], state, lm_score, NEG, total + p)
        if not out:  # no hypothesis can go on with the likely tokens: take every token this frame
            if len(candidates) == log_probs.size:
                return beams
            return self._step(beams, log_probs, beam_size, list(range(log_probs.size)))
        scored = [(self._rank(e), e) for e in out.values()]
        scored.sort(key=lambda pair: pair[0], reverse=True)
        floor = scored[0][0] - self.threshold
        return {e[0].key: e for score, e in scored[:beam_size] if score >= floor}

    def _run(self, beams: dict, logits: np.ndarray, beam_size: int) -> dict:
        for frame in log_softmax(logits):
            beams = self._step(beams, frame, beam_size)
        return beams

    def finished_score(self, entry: list) -> float:
        """The hypothesis read as a whole text: the open word closed (if it is a word) and ``</s>``."""
        _, p_blank, p_token, node, state, lm_score = entry
        score = _logaddexp(p_blank, p_token) + lm_score
        if node:
            word = self.lexicon.word[node]
            if word < 0:
                return NEG
            logp, state = self.lm.score(state, word)
            score += self.lm_weight * logp + self.word_score
        return score + self.lm_weight * self.lm.score(state, self.lm.eos)[0]

    def _best(self, beams: dict) -> str:
        entries = list(beams.values())
        scores = [self.finished_score(e) for e in entries]
        best = max(range(len(entries)), key=lambda i: (scores[i], self._rank(entries[i])))
        return "".join(self.texts[i] for i in entries[best][0].ids())

    def advance(self, state: LMBeamState, logits: np.ndarray) -> None:
        """Consume committed frames ``(T, V)`` in place."""
        state.beams = self._run(state.beams, logits, self.beam_size)

    def preview(self, state: LMBeamState, logits: np.ndarray) -> str:
        """The best hypothesis so far continued by the look-ahead frames' best path (``state``
        unchanged). The look-ahead is decoded again, with the LM, once it is committed, so the
        tentative tail takes the cheap way: at the default beam a full search of the look-ahead
        frames cost more than the rest of the decoding."""
        best = max(state.beams.values(), key=self._rank)
        ids = best[0].ids()
        previous = best[0].token if best[2] > best[1] else -1  # a repeat merges across the seam
        for token in logits.argmax(-1).tolist():
            if token != previous and token != self.blank_id:
                ids.append(token)
            previous = token
        return "".join(self.texts[i] for i in ids)

    def text(self, state: LMBeamState) -> str:
        return self._best(state.beams)

    def describe(self) -> str:
        return f"LM decoder ({self.source}, {sum(self.lm.ngrams.values())} n-grams, beam {self.beam_size})"
