"""Transcribe a dataset with a PyTorch CTC model and score it (WER/CER with jiwer)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechmpq.audio import normalize_waveform
from speechmpq.datasets import Utterance
from speechmpq.vocab import VOCAB, ctc_greedy_decode


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


def transcribe_torch(model, utterances: list[Utterance], batch_seconds: float = 120.0,
                     progress: bool = True, tokens=VOCAB, input_transform=None,
                     do_normalize: bool = False, attention_mask: bool = True) -> list[str]:
    """Greedy CTC transcripts of ``utterances`` (batched by length; order preserved).

    ``input_transform`` (float32 samples → float32 samples) is applied to each waveform first,
    then per-utterance normalisation if ``do_normalize``. Models that take no attention mask are
    fed one utterance at a time, so padding never changes their output.
    """
    import torch
    from tqdm import tqdm

    from speechmpq.audio import load_audio

    model.eval()
    device = next(model.parameters()).device
    audios = [load_audio(u.path) for u in utterances]
    if input_transform is not None:
        audios = [input_transform(a).astype(np.float32) for a in audios]
    if do_normalize:
        audios = [normalize_waveform(a).astype(np.float32) for a in audios]
    order = np.argsort([a.shape[0] for a in audios])
    hypotheses: list[str] = [""] * len(audios)
    batches, current = [], []
    for index in order:
        full = audios[index].shape[0] / 16000 * (len(current) + 1) > batch_seconds
        if current and (full or not attention_mask):
            batches.append(current)
            current = []
        current.append(int(index))
    if current:
        batches.append(current)
    with torch.inference_mode():
        for batch in tqdm(batches, desc="transcribe", unit="batch", disable=not progress):
            longest = max(audios[i].shape[0] for i in batch)
            values = torch.zeros(len(batch), longest)
            mask = torch.zeros(len(batch), longest, dtype=torch.long)
            for row, i in enumerate(batch):
                values[row, : audios[i].shape[0]] = torch.from_numpy(audios[i])
                mask[row, : audios[i].shape[0]] = 1
            logits = model(values.to(device),
                           attention_mask=mask.to(device) if attention_mask else None).logits.float()
            frames = model._get_feat_extract_output_lengths(mask.sum(-1)).tolist()
            best = logits.argmax(-1).cpu().numpy()
            for row, i in enumerate(batch):
                hypotheses[i] = ctc_greedy_decode(best[row, : int(frames[row])], tokens)
    return hypotheses


def evaluate_torch(model, utterances: list[Utterance], progress: bool = True, **settings) -> dict:
    hypotheses = transcribe_torch(model, utterances, progress=progress, **settings)
    return score_pairs([u.utt_id for u in utterances], [u.transcript for u in utterances],
                       hypotheses)
