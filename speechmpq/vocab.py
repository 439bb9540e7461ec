"""The character vocabulary shared by every model and stage.

It is the 32-symbol LibriSpeech character set of facebook/wav2vec2-base-100h, in the same order, so
real fine-tuned checkpoints are drop-in replacements. ``|`` is the word delimiter and ``<pad>`` (id 0)
doubles as the CTC blank.
"""

from __future__ import annotations

import numpy as np

VOCAB: tuple[str, ...] = (
    "<pad>", "<s>", "</s>", "<unk>", "|",
    "E", "T", "A", "O", "N", "I", "H", "S", "R", "D", "L", "U", "M", "W", "C", "F", "G", "Y",
    "P", "B", "V", "K", "'", "X", "J", "Q", "Z",
)  # fmt: skip
BLANK_ID = 0
WORD_DELIMITER = "|"


def vocab_dict() -> dict[str, int]:
    """Token → id, as written to ``vocab.json``."""
    return {token: index for index, token in enumerate(VOCAB)}


def encode(transcript: str, vocab: dict[str, int] | None = None) -> list[int]:
    """Normalised transcript (``A-Z'`` and single spaces) → label ids; spaces become ``|``."""
    vocab = vocab or vocab_dict()
    unk = vocab["<unk>"]
    return [vocab.get(WORD_DELIMITER if ch == " " else ch, unk) for ch in transcript]


def ctc_greedy_decode(ids: np.ndarray, tokens: list[str] | tuple[str, ...] = VOCAB,
                      blank_id: int = BLANK_ID) -> str:
    """Best-path CTC decoding of frame-wise argmax ids ``(T,)``: merge repeats, drop blanks.

    Special tokens (``<s>``, ``</s>``, ``<unk>``) are dropped and the word delimiter becomes a space.
    """
    ids = np.asarray(ids).reshape(-1)
    if ids.size == 0:
        return ""
    keep = np.ones(ids.shape, dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    keep &= ids != blank_id
    chars = []
    for index in ids[keep]:
        token = tokens[int(index)]
        if token == WORD_DELIMITER:
            chars.append(" ")
        elif len(token) == 1:
            chars.append(token)
    return " ".join("".join(chars).split())
