"""The soak, short: minutes of audio through 1 and 2 concurrent streams (the full hour: results/soak.md)."""

import pytest

from speechmpq.runtime.soak import markdown, run_soak


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
    rows = [line for line in markdown(results, "cmd", "machine").splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| 1", "| 2", "|  "]  # one row per stream
    assert all(row.rstrip().endswith("PASS |") for row in (rows[2], rows[3]))
