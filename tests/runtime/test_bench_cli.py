"""``speechmpq stream``, ``eval --streaming`` and ``bench`` from the command line."""

import json
from pathlib import Path

import pytest

from speechmpq.audio import load_audio
from speechmpq.cli import main
from speechmpq.datasets import read_dataset
from speechmpq.runtime import DecoderConfig, Recognizer, RecognizerConfig, bench

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo-mpq.onnx"


def test_stream_prints_the_final_transcript(tiny_corpus, capsys):
    utterance = read_dataset(tiny_corpus / "test-clean")[0]
    expected = Recognizer(DEMO, RecognizerConfig(decoder=DecoderConfig("auto"))).transcribe(
        load_audio(utterance.path), 16000)  # the command line's default: the LM beside the model
    assert main(["stream", str(DEMO), str(utterance.path), "--feed-ms", "50"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == expected
    assert "partial:" in captured.err and "RTF" in captured.err


@pytest.mark.parametrize("argv, message", [
    (["--chunk-ms", "330"], "not a multiple of the model's frame stride"),
    (["--right-ms", "-20"], ">= 0"),
    (["--feed-ms", "0"], "--feed-ms must be > 0"),
])
def test_stream_refuses_bad_settings_in_one_line(tiny_corpus, capsys, argv, message):
    utterance = read_dataset(tiny_corpus / "test-clean")[0]
    assert main(["stream", str(DEMO), str(utterance.path), *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_stream_goes_on_after_a_bad_file_and_exits_non_zero(tiny_corpus, tmp_path, capsys):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"not audio at all")
    good = read_dataset(tiny_corpus / "test-clean")[0].path
    assert main(["stream", str(DEMO), str(bad), str(good), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert f"{good}: " in captured.out and "cannot read audio" in captured.err


def test_eval_streaming_and_offline(tiny_corpus, tmp_path, capsys):
    data = tiny_corpus / "test-clean"
    runs = [([], tmp_path / "offline"), (["--streaming", "--chunk-ms", "320"], tmp_path / "stream")]
    for flag, out in runs:
        assert main(["eval", "--model", str(DEMO), "--data", str(data), "--out", str(out), "--quiet",
                     *flag]) == 0
    offline = json.loads((tmp_path / "offline" / "summary.json").read_text())
    streaming = json.loads((tmp_path / "stream" / "summary.json").read_text())
    assert offline["utterances"] == streaming["utterances"] == 6
    assert 0 <= abs(offline["wer"] - streaming["wer"]) < 0.5


def test_bench_measures_each_model_in_its_own_interleaved_child(tiny_corpus, tmp_path, monkeypatch):
    calls = []
    real_child = bench._child

    def spy(path, spec):
        calls.append((str(path), spec["task"], spec["threads"]))
        return real_child(path, spec)

    monkeypatch.setattr(bench, "_child", spy)
    config = bench.BenchConfig(models=[f"a={DEMO}", f"b={DEMO}"], data=[str(tiny_corpus / "test-clean")],
                               out=tmp_path / "report", threads=[1], repetitions=2, stream_seconds=8,
                               fp32="a", mpq="b", chunk_ms=320, profile=True)
    report = bench.run_bench(config, progress=False)
    from speechmpq.runtime import write_report

    written = write_report(report, config.out, "speechmpq bench ...")
    assert [c[1] for c in calls] == ["latency"] * 4 + ["wer"] * 2 + ["profile"] * 2
    assert [c[0] for c in calls[:4]] == [str(DEMO)] * 4  # a b a b: one child each
    rows = report["latency"]["1"]
    for row in rows.values():
        assert row["chunk_latency_ms"]["samples"] > 2 * 8
        assert row["peak_rss_mib"] >= row["rss_after_load_mib"] > 0
        assert row["ru_maxrss_mib"] >= row["peak_rss_mib"] * 0.99 and row["accuracy_level"] == 0
        assert row["chunk_ms"] == 320 and row["file_bytes"] == DEMO.stat().st_size
    head = report["headline"]
    assert head["fp32"] == "a" and head["mpq"] == "b" and head["latency_ratio_mpq_over_fp32"] > 0
    assert head["latency_ratio_mpq_over_ort_int8"] is None  # no int8 peer among the models
    assert report["wer"]["a"]["offline_wer"] == report["wer"]["b"]["offline_wer"]
    assert "streaming_minus_offline_wer" in head
    assert {p.suffix for p in written} >= {".json", ".md", ".png"}
    assert "| a | mpq | 0 |" in (tmp_path / "report.md").read_text()
    assert report["profile"]["a"]["op_ms"]["MatMulNBits"] > 0  # the fused 2/4/8-bit kernels ran


def test_bench_refuses_a_missing_model(tmp_path, capsys):
    assert main(["bench", "--models", str(tmp_path / "nope.onnx"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "r")]) == 1
    assert "not an .onnx file or a PyTorch model directory" in capsys.readouterr().err


def test_bench_row_with_the_lm_decoder(tiny_corpus, tmp_path):
    """A row decoded with the LM beside the same model decoded greedily: the decoder is recorded and
    the LM row's WER is lower (the demo LM knows the grammar's words)."""
    lm = DEMO.parent / "lm.arpa.gz"
    data = [str(tiny_corpus / "test-clean")]
    config = bench.BenchConfig(models=[f"greedy={DEMO}", f"lm={DEMO}"], data=data,
                               out=tmp_path / "report", threads=[1], repetitions=1, stream_seconds=6,
                               end_of_speech_utterances=1, fp32="greedy", mpq="lm",
                               decoders={"lm": {"method": "lm", "lm": str(lm)}})
    report = bench.run_bench(config, progress=False)
    rows = report["latency"]["1"]
    assert rows["greedy"]["decoder"] == "greedy" and rows["lm"]["decoder"] == "lm"
    utterances = read_dataset(tiny_corpus / "test-clean")
    recognizer = Recognizer(DEMO, RecognizerConfig(decoder=DecoderConfig("lm", lm=str(lm))))
    expected = recognizer.transcribe(load_audio(utterances[0].path), 16000)
    from speechmpq.runtime import bench_markdown

    assert "| lm | mpq | 0 | on | lm |" in bench_markdown(report, "speechmpq bench ...")  # cache: exact, on
    assert expected  # the LM decoder gives words for a test utterance
    assert report["wer"]["lm"]["offline_wer"] < report["wer"]["greedy"]["offline_wer"]
    with pytest.raises(Exception, match="names no model labelled"):
        bench.run_bench(bench.BenchConfig(models=[f"a={DEMO}"], data=[str(tiny_corpus / "test-clean")],
                                          out=tmp_path / "r2", decoders={"zz": {"method": "lm"}}),
                        progress=False)
