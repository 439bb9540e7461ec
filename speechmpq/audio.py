"""Audio loading shared by every stage (numpy + soundfile + soxr; never torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speechmpq.errors import AudioError

SAMPLE_RATE = 16000


def to_mono_float32(samples: np.ndarray) -> np.ndarray:
    """``(T,)`` or ``(T, C)`` samples of any numeric dtype → mono float32 ``(T,)``.

    Integer PCM is scaled to [-1, 1); channels are averaged. NaN/Inf samples are refused, since a
    model fed them returns garbage without complaint.
    """
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    elif samples.ndim != 1:
        raise AudioError(f"audio must be 1-D or (samples, channels), got shape {samples.shape}")
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / float(-np.iinfo(samples.dtype).min)
    samples = samples.astype(np.float32, copy=False)
    if not np.all(np.isfinite(samples)):
        raise AudioError("audio contains NaN or infinite samples")
    return samples


def resample(samples: np.ndarray, from_rate: int, to_rate: int = SAMPLE_RATE) -> np.ndarray:
    """High-quality resampling with soxr (a no-op when the rates match)."""
    if from_rate <= 0:
        raise AudioError(f"invalid sample rate {from_rate}")
    if from_rate == to_rate:
        return samples
    import soxr

    return soxr.resample(samples, from_rate, to_rate, quality="HQ").astype(np.float32)


# what soundfile raises for files it cannot read (also mid-file)
_READ_ERRORS = (RuntimeError, ValueError, OSError)  # LibsndfileError is a RuntimeError


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    return path


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read any file libsndfile understands → mono float32 at ``sample_rate``.

    Stereo and multi-channel audio is averaged to mono; other rates are resampled. Any failure is an
    ``AudioError`` whose message names the file.
    """
    import soundfile

    path = _existing_file(path)
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except _READ_ERRORS as error:
        raise AudioError(f"{path}: cannot read audio ({error})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    try:
        result = resample(to_mono_float32(samples), rate, sample_rate)
    except AudioError as error:
        raise AudioError(f"{path}: {error}") from None
    if result.size == 0:  # e.g. one sample at 44.1 kHz resampled to 16 kHz
        raise AudioError(f"{path}: too short ({samples.shape[0]} samples at {rate} Hz)")
    return result


def iter_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, block_seconds: float = 1.0):
    """Stream a file of any length in blocks: mono float32 pieces at ``sample_rate``, in bounded
    memory (one block and the resampler's state). Failures, also mid-file, are ``AudioError``s
    naming the file."""
    import soundfile
    import soxr

    path = _existing_file(path)
    try:
        handle = soundfile.SoundFile(str(path))
    except _READ_ERRORS as error:
        raise AudioError(f"{path}: cannot read audio ({error})") from None
    with handle:
        rate, total, produced = handle.samplerate, 0, 0
        if rate <= 0:
            raise AudioError(f"{path}: invalid sample rate {rate}")
        resampler = None if rate == sample_rate else soxr.ResampleStream(
            rate, sample_rate, 1, dtype="float32", quality="HQ")
        block = max(1, int(rate * block_seconds))
        while True:
            try:
                data = handle.read(block, dtype="float32", always_2d=True)
            except _READ_ERRORS as error:
                raise AudioError(f"{path}: cannot read audio ({error})") from None
            last = data.shape[0] < block
            try:
                mono = to_mono_float32(data)
            except AudioError as error:
                raise AudioError(f"{path}: {error}") from None
            total += mono.size
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            if mono.size:
                produced += mono.size
                yield mono
            if last:
                break
        if total == 0:
            raise AudioError(f"{path}: contains no samples")
        if produced == 0:
            raise AudioError(f"{path}: too short ({total} samples at {rate} Hz)")


def normalize_waveform(samples: np.ndarray) -> np.ndarray:
    """Per-utterance zero mean, unit variance, as transformers' Wav2Vec2FeatureExtractor does."""
    return (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
