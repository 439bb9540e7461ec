"""A minimal ctypes binding to the libespeak-ng bundled in the ``espeakng-loader`` wheel.

Known traps, each handled here or by the caller:
- Synthesis keeps hidden state across calls inside one process (the same text twice gives slightly
  different audio, and ``espeak_Terminate`` + re-initialising does not reset it), while a fresh
  process is reproducible. Callers that need determinism synthesize each utterance in a new process
  that loads the library itself (see ``speechmpq.train.corpus.build``).
- Some variants (f2, f3, f5, ...) add breath noise from a random generator; it is seeded per utterance
  with ``espeak_ng_SetRandSeed`` and the C ``srand``.
- Some variants clip at the default volume: synthesize at a lower volume.
- A voice name that does not exist silently falls back to another voice, so every selection is checked
  against the identifier espeak reports back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

import numpy as np

from speechmpq.errors import SpeechmpqError

# espeak_AUDIO_OUTPUT, espeak_PARAMETER and flag values from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_CHARS_UTF8 = 1

# English accents espeak offers (language file → selection name). en-Shaw (Shavian script) is left out.
ACCENTS: dict[str, str] = {
    "en": "gmw/en",
    "en-us": "gmw/en-US",
    "en-us-nyc": "gmw/en-US-nyc",
    "en-029": "gmw/en-029",
    "en-gb-scotland": "gmw/en-GB-scotland",
    "en-gb-x-gbclan": "gmw/en-GB-x-gbclan",
    "en-gb-x-gbcwmd": "gmw/en-GB-x-gbcwmd",
    "en-gb-x-rp": "gmw/en-GB-x-rp",
}


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class Prosody:
    rate_wpm: int = 175  # speaking rate, words per minute (espeak: 80..450)
    pitch: int = 50  # base pitch 0..99
    pitch_range: int = 50  # intonation range 0..99
    volume: int = 60  # amplitude 0..200; 100 clips on some variants

    def __post_init__(self):
        if not 80 <= self.rate_wpm <= 450:
            raise ValueError(f"rate_wpm must be in 80..450, got {self.rate_wpm}")
        for name in ("pitch", "pitch_range"):
            if not 0 <= getattr(self, name) <= 99:
                raise ValueError(f"{name} must be in 0..99, got {getattr(self, name)}")
        if not 1 <= self.volume <= 200:
            raise ValueError(f"volume must be in 1..200, got {self.volume}")


_ENGINE: Espeak | None = None


def get_engine() -> Espeak:
    """This process's libespeak-ng (initialised on first use; the library is a process singleton)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Espeak()
    return _ENGINE


class Espeak:
    """libespeak-ng in this process. Use ``get_engine()``: the library holds global state."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as error:
            raise SpeechmpqError(
                "speech synthesis needs the espeakng-loader package: pip install 'speechmpq[train]'"
            ) from error
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"))
        self._lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_Voice)
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.sample_rate <= 0:
            raise SpeechmpqError(f"libespeak-ng failed to initialise with data at {data.decode()}")
        self._chunks: list[np.ndarray] = []
        self._callback = _Callback(self._collect)  # keep a reference: espeak holds only a pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, num_samples, _events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # 0 = continue synthesis

    def select_voice(self, accent: str, variant: str | None) -> str:
        """Select ``accent`` (a key of ACCENTS) with an optional variant; returns espeak's identifier.

        Raises if espeak fell back to a different voice than the one asked for.
        """
        if accent not in ACCENTS:
            raise ValueError(f"unknown accent {accent!r}; choose from {sorted(ACCENTS)}")
        wanted = ACCENTS[accent] + (f"+{variant}" if variant else "")
        if self._lib.espeak_SetVoiceByName(wanted.encode()) != 0:
            raise SpeechmpqError(f"espeak could not select voice {wanted}")
        got = self._lib.espeak_GetCurrentVoice().contents.identifier.decode()
        if got.lower() != wanted.lower():
            raise SpeechmpqError(f"espeak selected {got} instead of {wanted}")
        return got

    def synthesize(self, text: str, accent: str, variant: str | None, prosody: Prosody,
                   seed: int) -> np.ndarray:
        """Speak ``text``; returns float32 samples in [-1, 1] at ``self.sample_rate``."""
        self.select_voice(accent, variant)
        self._lib.espeak_SetParameter(_PARAM_RATE, prosody.rate_wpm, 0)
        self._lib.espeak_SetParameter(_PARAM_PITCH, prosody.pitch, 0)
        self._lib.espeak_SetParameter(_PARAM_RANGE, prosody.pitch_range, 0)
        self._lib.espeak_SetParameter(_PARAM_VOLUME, prosody.volume, 0)
        self._lib.espeak_ng_SetRandSeed(seed)
        self._libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
        self._chunks.clear()
        encoded = text.encode("utf-8") + b"\0"
        status = self._lib.espeak_Synth(encoded, len(encoded), 0, 0, 0, _CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise SpeechmpqError(f"espeak failed (status {status}) on text {text[:60]!r}")
        samples = np.concatenate(self._chunks)
        self._chunks.clear()
        return samples.astype(np.float32) / 32768.0
