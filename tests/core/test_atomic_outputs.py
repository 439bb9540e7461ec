"""Every output is written beside its target and renamed: a writer killed with SIGKILL leaves the
previous output intact (and the next write clears what the killed one left behind)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechmpq.files import atomic_write, replace_folder, restore_folder, staging_folder

sys.path.insert(0, str(Path(__file__).parent))
import killed_writer  # noqa: E402

WRITER = Path(killed_writer.__file__)


def _visible(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` except temporaries (dot names) and the test's marker."""
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not relative.parts[0].startswith(".") and path.name != "marker":
            files[str(relative)] = path.read_bytes()
    return files


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _start(kind: str, target: Path, when: str, size: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WRITER), kind, str(target), str(target.parent / "marker"),
                             when, str(size)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def _wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"writer ended before the kill: {process.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "writer never reached the kill point"
        time.sleep(0.002)


KINDS = ["text", "checkpoint", "onnx", "onnx-external", "plot", "model-dir"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_writer_killed_before_its_rename_leaves_the_previous_output(kind, tmp_path):
    target = tmp_path / {"checkpoint": "checkpoint.pt", "onnx": "model.onnx", "onnx-external": "model.onnx",
                         "plot": "plot.png", "model-dir": "model", "text": "bitplan.json"}[kind]
    killed_writer.write(kind, target, 1000)  # onnx: 4 KB of weights, over the external-data threshold
    before = _visible(tmp_path)
    assert before
    if kind == "onnx-external":
        assert any(name.endswith(".data") for name in before)

    writer = _start(kind, target, "rename", 2000)
    _wait_for((tmp_path / "marker").exists, writer)
    _kill(writer)
    assert _visible(tmp_path) == before  # the new output was complete, but never replaced the old one
    assert _temporaries(tmp_path), "the killed writer's temporary should still be there"
    if kind.startswith("onnx"):
        import numpy as np
        import onnxruntime as ort

        session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        assert session.run(None, {"x": np.zeros(1000, np.float32)})[0].tolist() == [2.0] * 1000

    (tmp_path / "marker").unlink()
    killed_writer.write(kind, target, 2000)  # a later write replaces it and clears the leftovers
    assert _visible(tmp_path) != before
    assert _temporaries(tmp_path) == []


@pytest.mark.parametrize("kind, torn", [("checkpoint", False), ("naive", True)])
def test_a_checkpoint_killed_while_its_bytes_are_written(kind, torn, tmp_path):
    """Killed at a random moment mid-write. The control (a plain torch.save onto the target) is
    torn by the same kill, which shows the check can fail."""
    import torch

    target = tmp_path / "checkpoint.pt"
    killed_writer.write("checkpoint", target, 100)
    before = target.read_bytes()

    def growing() -> bool:
        if kind == "naive":
            candidates = [target]
        else:
            candidates = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
        return any(p.stat().st_size > 1 << 20 for p in candidates if p.exists())

    writer = _start(kind, target, "free", 60_000_000)  # 240 MB: about a second of writing
    _wait_for(growing, writer)
    _kill(writer)
    if torn:  # the control: cut short, unreadable
        assert target.read_bytes() != before
        with pytest.raises(Exception):  # noqa: B017 - whatever torch raises on a torn zip
            torch.load(target, weights_only=True)
    else:
        assert target.read_bytes() == before
        assert torch.load(target, weights_only=True)["weights"].tolist() == [2.0] * 100


def test_a_folder_swap_cut_between_two_renames_is_restored(tmp_path):
    """Where no atomic exchange exists the swap is two renames; a kill between them leaves the
    previous folder under NAME.old, which the next write (or restore_folder) puts back."""
    final = tmp_path / "model"
    final.mkdir()
    (final / "weights").write_text("old")
    final.rename(tmp_path / "model.old")  # the state after the first rename
    restore_folder(final)
    assert (final / "weights").read_text() == "old"

    staging = staging_folder(final)
    (staging / "weights").write_text("new")
    replace_folder(staging, final)
    assert (final / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_without_an_atomic_exchange_the_two_renames_replace_the_folder(tmp_path, monkeypatch):
    import speechmpq.files

    monkeypatch.setattr(speechmpq.files, "_exchange", lambda first, second: False)
    final = tmp_path / "split"
    for text in ("old", "new"):
        staging = staging_folder(final)
        (staging / "weights").write_text(text)
        replace_folder(staging, final)
        assert (final / "weights").read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split"]


def test_a_torn_log_line_is_cut_before_the_next_record(tmp_path):
    import json

    from speechmpq.train.run_folder import append_log, read_log

    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1}\n{"step": 2, "lo')  # killed mid-line
    append_log(log, {"event": "resume", "step": 1})
    log.write_text(log.read_text() + '{"step": 2, "lo')  # killed again, never resumed
    assert read_log(log) == [{"step": 1}, {"event": "resume", "step": 1}]  # readers skip the torn line
    append_log(log, {"event": "resume", "step": 1})
    assert [json.loads(line) for line in log.read_text().splitlines()] == [
        {"step": 1}, {"event": "resume", "step": 1}, {"event": "resume", "step": 1}]


def test_a_temporary_of_a_live_process_is_left_alone(tmp_path):
    target = tmp_path / "report.md"
    live = tmp_path / f".report.md.{os.getppid()}.tmp"  # a running process (this one's parent)
    live.write_text("being written")
    atomic_write(target, "done\n")
    assert live.exists() and target.read_text() == "done\n"


def test_a_failed_write_removes_its_temporary_and_keeps_the_target(tmp_path):
    from speechmpq.files import atomic_output

    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk gone")
    assert target.read_text() == "old" and _temporaries(tmp_path) == []
