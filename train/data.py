"""Torch data pipeline for CTC training: audio + label ids, batched by total seconds of audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from speechmpq.audio import load_audio
from speechmpq.datasets import Utterance, corpus_metadata, read_dataset
from speechmpq.errors import AudioError
from speechmpq.vocab import encode


def utterance_seconds(utterances: list[Utterance]) -> np.ndarray:
    """Durations, from the corpus's ``utterances.tsv`` where there is one, else from file headers."""
    import soundfile

    known = {utt_id: float(row["seconds"]) for utt_id, row in corpus_metadata(utterances).items()}
    seconds = []
    for u in utterances:
        if u.utt_id not in known:
            try:
                info = soundfile.info(str(u.path))
            except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
                raise AudioError(f"{u.path}: cannot read audio ({error})") from None
            known[u.utt_id] = info.frames / info.samplerate
        seconds.append(known[u.utt_id])
    return np.asarray(seconds)


def training_utterances(path: Path, max_seconds: float) -> tuple[list[Utterance], np.ndarray]:
    """A training set's utterances of at most ``max_seconds``, and their durations (N,)."""
    utterances = read_dataset(path)
    seconds = utterance_seconds(utterances)
    keep = [i for i, s in enumerate(seconds) if s <= max_seconds]
    return [utterances[i] for i in keep], seconds[keep]


class SpeechDataset(torch.utils.data.Dataset):
    def __init__(self, utterances: list[Utterance]):
        self.utterances = utterances

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> tuple[np.ndarray, list[int], str]:
        utterance = self.utterances[index]
        return load_audio(utterance.path), encode(utterance.transcript), utterance.transcript


class SecondsBatchSampler(torch.utils.data.Sampler):
    """Batches of similar-length utterances holding at most ``batch_seconds`` of padded audio.

    The order is a function of (seed, epoch), and the sampler can start mid-epoch, so a resumed
    run sees exactly the batches an uninterrupted one would have.
    """

    def __init__(self, seconds: np.ndarray, batch_seconds: float, seed: int, shuffle: bool = True,
                 min_size: int = 1):
        self.min_size = min_size  # batches with fewer utterances are left out
        self.seconds = np.asarray(seconds)
        self.batch_seconds = batch_seconds
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    def batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = np.argsort(self.seconds, kind="stable")
        if self.shuffle:
            # Sort by length with a little jitter so buckets differ from epoch to epoch.
            jitter = rng.uniform(0.0, 0.6, size=len(order))
            order = np.argsort(self.seconds + jitter, kind="stable")
        batches, current, longest = [], [], 0.0
        for index in order:
            longest_if_added = max(longest, self.seconds[index])
            if current and longest_if_added * (len(current) + 1) > self.batch_seconds:
                batches.append(current)
                current, longest_if_added = [], self.seconds[index]
            current.append(int(index))
            longest = longest_if_added
        if current:
            batches.append(current)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return [b for b in batches if len(b) >= self.min_size]

    def __iter__(self):
        yield from self.batches(self.epoch)[self.start_batch:]

    def __len__(self) -> int:
        return len(self.batches(self.epoch)) - self.start_batch


PAD_MULTIPLE = 4000  # samples (0.25 s): few distinct batch shapes keep kernel caches and RSS flat


def collate(items) -> dict[str, torch.Tensor | list[str]]:
    """Pad a list of (audio, label ids, transcript) into model inputs.

    input_values (B, T) zero-padded, T rounded up to a multiple of PAD_MULTIPLE; attention_mask
    (B, T); labels (B, L) padded with -100.
    """
    lengths = [audio.shape[0] for audio, _, _ in items]
    padded = -(-max(lengths) // PAD_MULTIPLE) * PAD_MULTIPLE
    audio_batch = torch.zeros(len(items), padded)
    mask = torch.zeros(len(items), padded, dtype=torch.long)
    label_length = max(len(labels) for _, labels, _ in items)
    labels = torch.full((len(items), label_length), -100, dtype=torch.long)
    for row, (audio, ids, _) in enumerate(items):
        audio_batch[row, : audio.shape[0]] = torch.from_numpy(audio)
        mask[row, : audio.shape[0]] = 1
        labels[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return {
        "input_values": audio_batch,
        "attention_mask": mask,
        "labels": labels,
        "transcripts": [text for _, _, text in items],
    }

