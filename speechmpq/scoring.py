"""WER/CER scoring of hypotheses against references (jiwer; no torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class UtteranceScore:
    utt_id: str
    reference: str
    hypothesis: str
    ref_words: int
    word_errors: int  # substitutions + deletions + insertions
    ref_chars: int
    char_errors: int


def score_pairs(ids: list[str], references: list[str], hypotheses: list[str]) -> dict:
    """Corpus WER/CER (errors over reference length) and per-utterance error counts."""
    import jiwer

    rows = []
    for utt_id, ref, hyp in zip(ids, references, hypotheses, strict=True):
        words = jiwer.process_words(ref, hyp) if ref else None
        chars = jiwer.process_characters(ref, hyp) if ref else None
        word_errors = (words.substitutions + words.deletions + words.insertions) if words else len(
            hyp.split())
        char_errors = (chars.substitutions + chars.deletions + chars.insertions) if chars else len(hyp)
        rows.append(UtteranceScore(utt_id, ref, hyp, len(ref.split()), word_errors, len(ref),
                                   char_errors))
    ref_words = sum(r.ref_words for r in rows)
    ref_chars = sum(r.ref_chars for r in rows)
    return {
        "utterances": len(rows),
        "wer": sum(r.word_errors for r in rows) / max(ref_words, 1),
        "cer": sum(r.char_errors for r in rows) / max(ref_chars, 1),
        "ref_words": ref_words,
        "word_errors": sum(r.word_errors for r in rows),
        "rows": rows,
    }
