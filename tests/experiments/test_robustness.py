"""Every bad-input case of experiments/robustness.py (results/robustness.md), as a test.

The script runs each case in a fresh process and records what a user sees; here the same cases go
through ``speechmpq.cli.main`` in this process (fast) and are judged by the script's own rule: a
transcript where one is expected, else one ``error:`` line and a non-zero exit. Any exception that
escapes ``main`` (what a user would see as a traceback) fails the case. The 2-hour file runs as a
slow test in its own process, with its peak memory measured.
"""

import importlib.util
import os
from pathlib import Path

import pytest

from speechmpq.cli import main

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("robustness", ROOT / "experiments" / "robustness.py")
robustness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(robustness)


@pytest.fixture(scope="module")
def cases(tiny_corpus, tmp_path_factory):
    work = tmp_path_factory.mktemp("robustness")
    (work / "tiny-data").symlink_to(tiny_corpus)
    return work, {case["case"]: case for case in robustness.build_cases(work, long_hours=0)}


def _run_in_process(case: dict, capsys) -> dict:
    argv = [str(a) for a in case["argv"][len(robustness.SPEECHMPQ):]]
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    return {"code": code, "stdout": out.strip(), "stderr_last": lines[-1] if lines else "",
            "warnings": [line for line in lines if line.startswith("warning:")], "traceback": False,
            "errors": [line for line in lines if "error:" in line]}


# the case names, fixed here so that pytest lists one test per case
CASE_NAMES = [
    "empty file (0 bytes)",
    "valid WAV header, zero-length signal",
    "FLAC, 16 kHz mono (reference)",
    "FLAC cut at half its bytes",
    "FLAC cut inside its header",
    "WAV cut at half its bytes (header says more)",
    "a text file named .wav",
    "random bytes named .flac",
    "a directory",
    "a missing file",
    *(f"{rate} Hz (resampled as a stream)" for rate in (8000, 22050, 44100, 48000, 96000)),
    "stereo",
    "6 channels",
    *(f"WAV {s}" for s in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")),
    "Ogg Vorbis",
    "one NaN sample (float WAV)",
    "one Inf sample (float WAV)",
    "hard clipping (x20 gain, clipped)",
    "float samples beyond ±1 (x3)",
    "one sample at 44.1 kHz (too short)",
    "0.19 s of audio (shorter than one chunk)",
    "not an ONNX file",
    "truncated .onnx (half its bytes)",
    "no such model file",
    "no speechmpq metadata (another tool's export)",
    "metadata from a newer format version",
    "vocabulary smaller than the output size",
    "bit plan naming a layer the graph does not have",
    "metadata that is not valid JSON",
    "chunk not a multiple of the frame stride",
    "negative chunk",
    "negative threads",
    "accuracy level 7",
    "beam size 0",
    "feed 0 ms",
    "target bits 9 (above the candidates)",
    "target bits 1 (below the candidates)",
    "unknown layer name in a per-layer rule",
    "candidate bit width 0",
    "pipeline with 3 test utterances",
    "export to an unwritable place",
    "export to a directory that is a file",
    "bench with a missing model",
    "LM decoder with a missing LM file",
    "LM whose header announces more n-grams than it has",
    "LM file that is gzip garbage",
    "lexicon with a token the model does not have",
    "greedy decoder given an LM",
    "LM built from an empty text",
]


def test_the_case_list_is_the_scripts(cases):
    assert sorted(cases[1]) == sorted(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_case(name, cases, capsys):
    case = {**cases[1][name]}
    case.update(_run_in_process(case, capsys))
    assert robustness.judge(case), f"{name}: exit {case['code']}, stderr: {case['stderr_last']}"
    if case["code"] != 0:
        assert len(case["errors"]) == 1, case["errors"]  # one line, not a cascade


def test_disk_full_leaves_nothing_behind(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    case = robustness.disk_full_case(tmp_path)
    if case is None:
        pytest.skip("tmpfs cannot be mounted here")
    assert robustness.judge(case), case


@pytest.mark.slow
def test_a_two_hour_file_streams_in_bounded_memory(tmp_path):
    """A 2-hour WAV streams in about the peak memory of a 10-minute one (both in fresh processes)."""
    import soundfile

    def write(path: Path, minutes: int) -> Path:
        with soundfile.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as handle:
            block = robustness._speech(600.0)
            for _ in range(minutes // 10):
                handle.write(block)
        return path

    peaks = {}
    for minutes in (10, 120):
        path = write(tmp_path / f"{minutes}.wav", minutes)
        argv = [*robustness.SPEECHMPQ, "stream", str(robustness.MODEL), str(path), "--quiet"]
        result = robustness._run(argv)
        assert result["code"] == 0 and result["stdout"], result["stderr_last"]
        peaks[minutes] = result["peak_rss_mib"]  # the child's own peak (wait4)
        path.unlink()
    assert peaks[120] < peaks[10] * 1.25 + 10, peaks
