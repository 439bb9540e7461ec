"""Acoustic degradations baked into part of the synthetic corpus: additive noise and a simple reverb.

Pure numpy functions of (signal, rng, parameters), so each utterance's degradation is reproducible
from its own seed.
"""

from __future__ import annotations

import numpy as np


def colored_noise(num_samples: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise whose power spectrum falls as 1/f^k: white k=0, pink k=1, brown k=2."""
    exponent = {"white": 0.0, "pink": 1.0, "brown": 2.0}[color]
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.arange(spectrum.shape[0], dtype=np.float64)
    freqs[0] = 1.0
    spectrum /= freqs ** (exponent / 2)
    noise = np.fft.irfft(spectrum, n=num_samples)
    noise -= noise.mean()
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def add_noise(signal: np.ndarray, snr_db: float, color: str, rng: np.random.Generator) -> np.ndarray:
    """Add noise at ``snr_db`` relative to the signal's power over its active (non-silent) part."""
    active = signal[np.abs(signal) > 1e-4]
    signal_power = float(np.mean(active**2)) if active.size else 1e-8
    noise = colored_noise(signal.shape[0], color, rng)
    scale = np.sqrt(signal_power / (10 ** (snr_db / 10)))
    return (signal + scale * noise).astype(np.float32)


def synthetic_rir(rt60_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response: direct path plus exponentially decaying noise (60 dB at rt60_s)."""
    length = int(rt60_s * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60_s)  # ln(1000) = 6.9 → -60 dB
    predelay = int(0.005 * sample_rate)
    tail[:predelay] = 0.0
    tail *= 0.3 / (np.sqrt(np.sum(tail**2)) + 1e-12)  # direct-to-reverberant ratio ~ +10 dB
    tail[0] = 1.0
    return tail.astype(np.float32)


def add_reverb(signal: np.ndarray, rt60_s: float, sample_rate: int,
               rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic RIR (FFT convolution), keeping the original length and level."""
    rir = synthetic_rir(rt60_s, sample_rate, rng)
    size = signal.shape[0] + rir.shape[0] - 1
    n_fft = 1 << (size - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(signal, n_fft) * np.fft.rfft(rir, n_fft), n_fft)[: signal.shape[0]]
    peak_in, peak_out = np.abs(signal).max(), np.abs(wet).max()
    if peak_out > 0:
        wet *= peak_in / peak_out
    return wet.astype(np.float32)


def peak_normalize(signal: np.ndarray, peak_dbfs: float) -> np.ndarray:
    peak = float(np.abs(signal).max())
    if peak == 0.0:
        return signal
    return (signal * (10 ** (peak_dbfs / 20) / peak)).astype(np.float32)
