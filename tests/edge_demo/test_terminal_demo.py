"""``speechmpq demo``: under a pseudo-terminal (live redraw) and with captured output."""

import functools
import os
import pty
import re
import select
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from speechmpq.audio import load_audio
from speechmpq.cli import main
from speechmpq.datasets import read_dataset
from speechmpq.runtime import DecoderConfig, Recognizer, RecognizerConfig
from speechmpq.scoring import score_pairs

MODEL = Path(__file__).resolve().parents[2] / "models" / "demo-mpq.onnx"


@pytest.fixture(scope="module")
def utterance(tiny_corpus):
    return max(read_dataset(tiny_corpus / "test-clean"), key=lambda u: len(u.transcript))


@functools.cache
def _cli_default() -> Recognizer:
    """The recognizer the command line builds by default (``--decoder auto``: the LM beside the model)."""
    return Recognizer(MODEL, RecognizerConfig(decoder=DecoderConfig("auto")))


def _expected(path) -> str:
    return _cli_default().transcribe(load_audio(path), 16000)


def _screen_lines(output: str) -> list[str]:
    """What a terminal would leave on each line: escapes dropped, text after the last carriage return."""
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", output.replace("\r\n", "\n"))
    return [line.rsplit("\r", 1)[-1] for line in plain.split("\n")]


def _run_in_pty(argv: list[str], timeout: float = 120) -> tuple[int, str]:
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
    process = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=env,
                               close_fds=True)
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], timeout)
        if not ready:
            process.kill()
            raise AssertionError("demo produced no output for too long: " + output.decode(errors="replace"))
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        output += data
    os.close(leader)
    return process.wait(timeout=30), output.decode("utf-8", errors="replace")


def test_demo_under_a_terminal_redraws_in_place_and_prints_the_final(utterance):
    code, output = _run_in_pty([sys.executable, "-m", "speechmpq", "demo", str(utterance.path),
                                "--model", str(MODEL), "--realtime", "--threads", "1"])
    assert code == 0, output
    expected = _expected(utterance.path)
    assert expected and expected in _screen_lines(output)
    assert "\033[1A" in output  # redrawn in place (cursor up), not scrolled
    assert "\033[2m" in output and "\033[1m" in output  # tentative dim, stable bold
    assert "RTF" in output and "peak RSS" in output and "ms" in output


def test_demo_captured_output_final_on_stdout_partials_on_stderr(utterance, capsys):
    assert main(["demo", str(utterance.path), "--model", str(MODEL), "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == _expected(utterance.path)
    partials = [line for line in captured.err.splitlines() if line.startswith("partial:")]
    assert partials and all("RTF" in line and "peak RSS" in line for line in partials)
    assert "chunks" in captured.err and "mpq" in captured.err and "bits/weight" in captured.err


def test_demo_without_audio_plays_the_bundled_clips(capsys):
    assert main(["demo", "--model", str(MODEL), "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("clip" in line and "THE" in line for line in lines)


def test_demo_bad_file_is_one_line_and_nonzero(tmp_path, capsys):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"not audio at all")
    assert main(["demo", str(bad), "--model", str(MODEL)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "noise.wav" in errors[0]


def test_demo_microphone_without_sounddevice_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as if not installed
    assert main(["demo", "--mic", "--model", str(MODEL)]) == 1
    err = capsys.readouterr().err
    assert "error: microphone input needs the optional sounddevice package" in err
    assert "speechmpq[mic]" in err and "Traceback" not in err


def test_demo_missing_model_is_one_line(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "nope.onnx")]) == 1
    assert capsys.readouterr().err.count("error:") == 1


class _FakeSounddevice(types.ModuleType):
    """A stand-in for the sounddevice package: a 'microphone' that plays ``audio`` then silence."""

    class PortAudioError(Exception):
        pass

    def __init__(self, audio=None, devices=True, open_fails=False):
        super().__init__("sounddevice")
        self.audio, self.devices, self.open_fails = audio, devices, open_fails
        fake = self

        class InputStream:
            def __init__(self, samplerate, channels, dtype, device, blocksize, callback):
                assert samplerate == 16000 and channels == 1 and dtype == "float32"
                self.blocksize, self.callback = blocksize, callback

            def __enter__(self):
                if fake.open_fails:
                    raise fake.PortAudioError("Error opening InputStream: Device unavailable")
                signal = np.concatenate([fake.audio, np.zeros(32000, np.float32)])
                for start in range(0, signal.size - self.blocksize + 1, self.blocksize):
                    self.callback(signal[start: start + self.blocksize, None], self.blocksize, None, None)
                return self

            def __exit__(self, *exc):
                return False

        self.InputStream = InputStream

    def query_devices(self, device=None, kind=None):
        if not self.devices:
            raise self.PortAudioError("Error querying device -1")
        return {"name": "fake", "max_input_channels": 1}


def test_demo_microphone_transcribes_what_the_device_delivers(utterance, monkeypatch, capsys):
    audio = load_audio(utterance.path)
    monkeypatch.setitem(sys.modules, "sounddevice", _FakeSounddevice(audio))
    assert main(["demo", "--mic", "--seconds", "4", "--model", str(MODEL)]) == 0
    captured = capsys.readouterr()
    heard = " ".join(captured.out.split())
    assert "listening" in captured.err and "Traceback" not in captured.err
    offline = _expected(utterance.path)
    assert heard, "nothing was printed"
    assert score_pairs(["mic"], [offline], [heard])["cer"] <= 0.25


@pytest.mark.parametrize("fake, message", [
    (_FakeSounddevice(devices=False), "error: no microphone found"),
    (_FakeSounddevice(np.zeros(0, np.float32), open_fails=True), "error: microphone: Error opening"),
])
def test_demo_microphone_without_a_device_is_one_line(fake, message, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    assert main(["demo", "--mic", "--seconds", "1", "--model", str(MODEL)]) == 1
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        next(line for line in err.splitlines() if line.startswith(message))]
    assert "Traceback" not in err
