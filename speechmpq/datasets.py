"""Speech dataset readers: LibriSpeech-style trees and manifest TSV files (numpy-free, torch-free).

A dataset is a list of ``Utterance`` records (id, audio path, transcript). Readers do not load
audio; ``speechmpq.audio.load_audio`` does that when needed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from speechmpq.errors import SpeechmpqError
from speechmpq.text import normalize_transcript

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3")


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    path: Path
    transcript: str
    speaker: str = ""


def read_librispeech(root: str | Path) -> list[Utterance]:
    """Every ``*.trans.txt`` below ``root`` (``SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt``)."""
    root = Path(root)
    utterances = []
    for trans in sorted(root.rglob("*.trans.txt")):
        for line_number, line in enumerate(trans.read_text().splitlines(), 1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            audio = next((trans.parent / (utt_id + s) for s in AUDIO_SUFFIXES
                          if (trans.parent / (utt_id + s)).exists()), None)
            if audio is None:
                raise SpeechmpqError(f"{trans}:{line_number}: no audio file for {utt_id}")
            utterances.append(Utterance(utt_id, audio, normalize_transcript(text),
                                        speaker=utt_id.split("-")[0]))
    return utterances


def read_manifest(path: str | Path) -> list[Utterance]:
    """A TSV of ``path<TAB>transcript`` lines (relative paths are relative to the manifest).

    A header line is allowed when its first column is ``path``; extra columns are ignored, and the
    shared realspeech manifests (``id, relative_path, duration_s, transcript, ...``) are understood.
    """
    path = Path(path)
    rows = list(csv.reader(path.read_text().splitlines(), delimiter="\t"))
    if not rows:
        raise SpeechmpqError(f"{path}: empty manifest")
    audio_col, text_col, id_col = 0, 1, None
    header = [c.strip().lower() for c in rows[0]]
    if "relative_path" in header and "transcript" in header:
        audio_col, text_col = header.index("relative_path"), header.index("transcript")
        id_col = header.index("id") if "id" in header else None
        rows = rows[1:]
    elif header and header[0] == "path":
        rows = rows[1:]
    utterances = []
    for line_number, row in enumerate(rows, 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) <= max(audio_col, text_col):
            raise SpeechmpqError(f"{path}:{line_number}: expected path<TAB>transcript")
        audio = Path(row[audio_col])
        if not audio.is_absolute():
            audio = path.parent / audio
        utt_id = row[id_col] if id_col is not None else audio.stem
        utterances.append(Utterance(utt_id, audio, normalize_transcript(row[text_col])))
    return utterances


def corpus_metadata(utterances: list[Utterance]) -> dict[str, dict[str, str]]:
    """utt_id → its row of a synthetic corpus's ``SPLIT/utterances.tsv`` (seconds, voice, seen...).

    Utterances from elsewhere (real LibriSpeech, manifests) have no row.
    """
    rows: dict[str, dict[str, str]] = {}
    tables = sorted({u.path.parents[2] / "utterances.tsv" for u in utterances if len(u.path.parents) > 2})
    for table in tables:
        if table.is_file():
            with open(table) as handle:
                for row in csv.DictReader(handle, delimiter="\t"):
                    rows[row["utt_id"]] = row
    return rows


def read_dataset(location: str | Path) -> list[Utterance]:
    """A manifest file (.tsv) or a folder holding a LibriSpeech tree."""
    location = Path(location)
    if location.is_file():
        utterances = read_manifest(location)
    elif location.is_dir():
        utterances = read_librispeech(location)
    else:
        raise SpeechmpqError(f"{location}: no such dataset folder or manifest")
    if not utterances:
        raise SpeechmpqError(f"{location}: no utterances found (expected *.trans.txt or a .tsv)")
    return utterances
