"""Run-folder plumbing shared by the trainers: a lock, the JSONL log, atomic checkpoints."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from speechmpq.errors import SpeechmpqError


class RunLock:
    """An exclusive lock on a run folder, so two trainers never write the same checkpoint."""

    def __init__(self, folder: Path):
        self._handle = open(folder / ".lock", "w")  # noqa: SIM115 (held for the run's lifetime)
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise SpeechmpqError(f"{folder} is in use by another training process") from None

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def read_log(path: Path) -> list[dict]:
    """The records of a JSONL log; a torn last line (a run killed mid-write) is left out."""
    lines = Path(path).read_text().splitlines()
    records = [json.loads(line) for line in lines[:-1]]
    if lines:
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(lines[-1]))
    return records


def append_log(path: Path, record: dict) -> None:
    """Append one JSON line; a torn last line (a run killed mid-write) is cut off first."""
    with open(path, "a+b") as handle:
        end = handle.seek(0, os.SEEK_END)
        if end:
            handle.seek(end - 1)
            if handle.read(1) != b"\n":
                handle.seek(0)
                handle.truncate(handle.read().rfind(b"\n") + 1)
        handle.write((json.dumps(record) + "\n").encode())


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a torn checkpoint."""
    import torch

    from speechmpq.files import atomic_output

    with atomic_output(path) as tmp:
        torch.save(state, tmp)
