"""Which CTC decoder a recognizer runs: greedy, prefix beam, or lexicon + n-gram LM.

``DecoderConfig`` says what the user asked for (``auto``: the LM beside the model if there is one,
else greedy); ``build_decoder`` resolves it against the model's folder and loads the LM and lexicon
once per process. Every decoder is a ``ctc.CTCDecoder``; its ``describe()`` gives the one line a user
sees.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from speechmpq.errors import ModelError
from speechmpq.runtime.ctc import CTCDecoder, GreedyDecoder, PrefixBeamDecoder

DECODERS = ("auto", "greedy", "beam", "lm")
# the LM weight and word score where neither the user nor the model says (tuned on the demo model's
# dev split with its grammar LM: results/lm_tune.md)
LM_WEIGHT, WORD_SCORE = 0.65, 0.5


@dataclass
class DecoderConfig:
    # "greedy" (best path), "beam" (CTC prefix beam search, no language model), "lm" (lexicon +
    # n-gram LM beam search, runtime/ctc_lm.py) or "auto": "lm" where an LM is found (``lm`` or
    # lm.arpa[.gz] beside the model), else greedy (the command line's default)
    method: str = "greedy"
    # hypotheses kept by the beam searches (None: 8 for "beam"; for "lm" the model's advice for its
    # recommended LM, else 24)
    beam_size: int | None = None
    # ARPA n-gram LM (plain or .gz) for "lm"; None: lm.arpa.gz or lm.arpa in the model's folder
    lm: str | None = None
    # lexicon file (WORD T O K E N S |); None: lexicon.txt beside the LM, else the LM's words spelled
    # letter by letter
    lexicon: str | None = None
    # weight of the LM's natural-log probability, and the score added per word; None: the model's
    # advice for its recommended LM (metadata), else LM_WEIGHT / WORD_SCORE
    lm_weight: float | None = None
    word_score: float | None = None

    def __post_init__(self):
        if self.method not in DECODERS:
            raise ValueError(f"decoder method must be one of {DECODERS}, not {self.method!r}")
        if self.beam_size is not None and self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, not {self.beam_size}")
        if self.lm_weight is not None and not 0 <= self.lm_weight < 100:
            raise ValueError(f"lm_weight must be in [0, 100), not {self.lm_weight}")
        if self.lm is not None and self.method not in ("lm", "auto"):
            raise ValueError(f"an LM needs the lm decoder, not {self.method!r}")


def find_lm(model_path: str | Path | None, recommended: str | None = None) -> Path | None:
    """The LM beside ``model_path``: the one the model recommends (``ModelInfo.lm``) and only it, else
    lm.arpa.gz or lm.arpa (None if there is none)."""
    if model_path is None:
        return None
    folder = Path(model_path).parent
    names = (recommended,) if recommended else ("lm.arpa.gz", "lm.arpa")
    return next((folder / name for name in names if (folder / name).is_file()), None)


def missing_lm_hint(model_path: str | Path | None, info) -> str | None:
    """One line for a user whose model recommends an LM that is not beside it, else None."""
    if model_path is None or not info.lm or find_lm(model_path, info.lm):
        return None
    where = Path(model_path).parent / info.lm
    return (f"decoding greedy: {info.lm}, the LM this model was tuned with, is not beside it (make it: "
            f"speechmpq lm --from-pocketsphinx --out {where})")


def _file_key(path: Path) -> tuple[str, int, int]:
    """(path, size, mtime): a file changed on disk is loaded again."""
    try:
        stat = path.stat()
    except OSError as error:
        raise ModelError(f"{path}: cannot read ({error.strerror or error})") from None
    return str(path), stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=2)
def _load_lm(lm_key: tuple, lexicon_key: tuple | None, tokens: tuple, word_delimiter: str):
    """The LM and lexicon, loaded once per process (recognizers, streams and server connections
    share them: they are read-only)."""
    from speechmpq.runtime.lm import Lexicon, NGramLM

    lm = NGramLM(lm_key[0])
    if lexicon_key is not None:
        return lm, Lexicon.read(lexicon_key[0], list(tokens), word_delimiter, lm)
    return lm, Lexicon.from_words(lm.words, list(tokens), lm)


def default_lexicon(lm_path: Path) -> Path:
    """NAME.lexicon.txt beside NAME.npz / NAME.arpa[.gz] (what ``speechmpq lm`` converts), else the
    folder's lexicon.txt for ARPA files (what ``speechmpq lm --text`` writes)."""
    stem = lm_path.name.removesuffix(".gz").removesuffix(".npz").removesuffix(".arpa")
    own = lm_path.parent / f"{stem}.lexicon.txt"
    return own if own.is_file() or lm_path.name.endswith(".npz") else lm_path.parent / "lexicon.txt"


def build_decoder(config: DecoderConfig, tokens: list[str], blank_id: int, word_delimiter: str,
                  model_path: str | Path | None = None, info=None) -> CTCDecoder:
    """The decoder ``config`` asks for (``auto`` resolved against the model's folder; ``info``, the
    model's ``ModelInfo``, may recommend an LM and its weights)."""
    recommended = getattr(info, "lm", None)
    lm_path = Path(config.lm) if config.lm else find_lm(model_path, recommended)
    method = config.method if config.method != "auto" else ("lm" if lm_path else "greedy")
    if method == "greedy":
        return GreedyDecoder(tokens, blank_id, word_delimiter)
    if method == "beam":
        return PrefixBeamDecoder(tokens, blank_id, word_delimiter, beam_size=config.beam_size or 8)
    if lm_path is None:
        raise ModelError("--decoder lm needs --lm FILE (no lm.arpa.gz or lm.arpa beside the model)")
    from speechmpq.runtime.ctc_lm import LexiconLMDecoder

    lexicon_path = Path(config.lexicon) if config.lexicon else default_lexicon(lm_path)
    lm, lexicon = _load_lm(_file_key(lm_path), _file_key(lexicon_path) if config.lexicon or
                           lexicon_path.is_file() else None, tuple(tokens), word_delimiter)
    # the model's weights go with its own LM only
    advised = info if recommended and lm_path.name == recommended else None
    lm_weight = _first(config.lm_weight, getattr(advised, "lm_weight", None), LM_WEIGHT)
    word_score = _first(config.word_score, getattr(advised, "word_score", None), WORD_SCORE)
    beam_size = _first(config.beam_size, getattr(advised, "lm_beam_size", None), 24)
    return LexiconLMDecoder(tokens, blank_id, word_delimiter, lm, lexicon, beam_size=beam_size,
                            lm_weight=lm_weight, word_score=word_score, source=str(lm_path))


def _first(*values):
    return next(v for v in values if v is not None)
