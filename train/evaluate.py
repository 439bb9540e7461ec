"""Transcribe a dataset with a PyTorch CTC model and score it (WER/CER with jiwer)."""

from __future__ import annotations

import numpy as np

from speechmpq.audio import SAMPLE_RATE, normalize_waveform
from speechmpq.datasets import Utterance
from speechmpq.scoring import UtteranceScore, score_pairs  # noqa: F401  (re-exported)
from speechmpq.vocab import VOCAB, ctc_greedy_decode


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
        full = audios[index].shape[0] / SAMPLE_RATE * (len(current) + 1) > batch_seconds
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
