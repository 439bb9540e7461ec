"""The soak, short: minutes of audio through 1 and 2 concurrent streams (the full hour: results/soak.md)."""

import pytest
from soak import markdown, run_soak


@pytest.mark.slow
def test_short_soak_is_stable_and_complete(tiny_corpus):
    from pathlib import Path

    model = Path(__file__).resolve().parents[2] / "models" / "demo-mpq.onnx"
    results = [run_soak(str(model), [str(tiny_corpus / "test-clean")], minutes=3, streams=count,
                        warmup_minutes=1, progress=False) for count in (1, 2)]
    for result in results:
        assert result["rss_growth"] < 0.05
        for stream in result["per_stream"]:
            assert stream["error"] is None and stream["audio_seconds"] >= 180
            # about one segment per utterance (two may merge when a gap holds a noise token)
            assert 0.9 * stream["utterances"] <= stream["segments"] <= stream["utterances"]
    assert results[0]["per_stream"][0]["wer"] == pytest.approx(results[1]["per_stream"][0]["wer"])
    table = [line for line in markdown(results, "cmd", "machine").splitlines()
             if line.startswith("|") and not line.startswith("|---")][1:]
    assert [line.split("|")[-2].strip() for line in table] == ["PASS", "PASS", ""]  # a row per stream


def test_steady_allocator_applies_on_glibc_and_can_be_turned_off():
    """In child processes: mallopt would stay in force for the rest of this test session."""
    import os
    import platform
    import subprocess
    import sys

    def applied(**env) -> str:
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("MALLOC_MMAP_THRESHOLD_", "SPEECHMPQ_STEADY_ALLOCATOR")}
        code = "from speechmpq.runtime import steady_allocator; print(steady_allocator())"
        return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True,
                              text=True, check=True).stdout.strip()

    assert applied(SPEECHMPQ_STEADY_ALLOCATOR="0") == "False"
    assert applied(MALLOC_MMAP_THRESHOLD_="65536") == "False"  # the user's own setting wins
    assert applied() == str(platform.libc_ver()[0] == "glibc")


def test_realtime_soak_takes_as_long_as_its_audio(tiny_corpus):
    from pathlib import Path

    model = Path(__file__).resolve().parents[2] / "models" / "demo-mpq.onnx"
    result = run_soak(str(model), [str(tiny_corpus / "test-clean")], minutes=0.1, streams=1,
                      warmup_minutes=0, progress=False, realtime=True)
    audio = result["per_stream"][0]["audio_seconds"]
    assert audio >= 6 and result["wall_seconds"] >= audio - 0.2 and result["realtime"]
