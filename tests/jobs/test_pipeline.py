"""``speechmpq pipeline``: config checks and the table in the default suite; a tiny full run is slow."""

import json
from pathlib import Path

import pytest

from speechmpq.cli import main
from speechmpq.jobs.pipeline import PipelineConfig
from speechmpq.jobs.pipeline_report import LM_ROWS, ROWS, bench_rows, format_table, headline, results_table


@pytest.mark.parametrize("field, value", [("train_hours", 0), ("test_utterances", 3), ("steps", 1),
                                          ("verdict_utterances", 9),
                                          ("target_bits", 9.0), ("repetitions", 0), ("lr", 0.0),
                                          ("granularity", "per-row")])
def test_impossible_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        PipelineConfig(**{field: value})


def test_cli_refuses_a_missing_model_in_one_line(tmp_path, capsys):
    assert main(["pipeline", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and "config.json" in err


def _bench(fp32_wer, mpq_wer, p):
    row = {"file_bytes": 20e6, "chunk_latency_ms": {"p50": 20.0}, "rtf": 0.03, "peak_rss_mib": 100.0}
    return {"headline": {"threads": 2},
            "latency": {"2": {"fp32": row, "mpq": {**row, "file_bytes": 4e6, "peak_rss_mib": 90.0}}},
            "wer": {"fp32": {"streaming_wer": fp32_wer, "offline_wer": fp32_wer},
                    "mpq": {"streaming_wer": mpq_wer, "offline_wer": mpq_wer, "streaming_vs_fp32_p": p}}}


@pytest.mark.parametrize("mpq_wer, p, lossless",
                         [(0.30, 0.01, False), (0.30, 0.40, True), (0.19, 0.01, True)])
def test_lossless_verdict_follows_the_significance_test(mpq_wer, p, lossless):
    table = results_table(_bench(0.20, mpq_wer, p), {"average_bits": 2.9})
    assert table[1]["lossless"] is lossless
    assert table[1]["size_ratio"] == pytest.approx(5.0) and table[1]["memory_ratio"] == pytest.approx(0.9)
    text = format_table(table)
    assert ("| NO |" in text) is (not lossless) and "2.90" in text and "5.0x smaller" in text


def test_peer_rows_and_both_headlines():
    bench = _bench(0.20, 0.20, 0.9)
    rows = bench["latency"]["2"]
    rows["ort-int8-dynamic"] = {**rows["fp32"], "file_bytes": 6e6, "chunk_latency_ms": {"p50": 10.0}}
    rows["fp32-cache"] = {**rows["fp32"], "chunk_latency_ms": {"p50": 12.0}}
    bench["wer"]["ort-int8-dynamic"] = {**bench["wer"]["mpq"], "streaming_vs_fp32_p": 0.01,
                                        "streaming_wer": 0.3}
    bench["wer"]["fp32-cache"] = {**bench["wer"]["fp32"], "streaming_vs_fp32_p": 0.9}
    bench["headline"].update(latency_ratio_mpq_over_fp32=0.5, latency_ratio_mpq_over_ort_int8=0.8,
                             latency_ratio_mpq_over_fp32_cached=0.9)
    table = results_table(bench, {"average_bits": 2.5})
    assert [row["label"] for row in table] == ["fp32", "fp32-cache", "ort-int8-dynamic", "mpq"]
    assert table[1]["average_bits"] == 32.0 and table[2]["average_bits"] is None
    assert table[2]["lossless"] is False and table[2]["latency_ratio"] == pytest.approx(0.5)
    text = format_table(table)
    assert "| ORT int8-dynamic | 30.00 | +10.00 (p=0.010) | NO | — |" in text
    assert "| FP32 + cache | 20.00 | +0.00 (p=0.900) | yes | 32.00 | 20.00 | 12.0 (0.60x) |" in text
    lines = headline(bench)
    assert lines[0].startswith("- against the peers as they run today: `latency_ratio_mpq_over_fp32` = 0.50")
    assert "`latency_ratio_mpq_over_fp32_cached` = 0.90" in lines[1]


def test_lm_rows_are_judged_against_fp32_with_the_lm():
    bench = _bench(0.60, 0.60, 0.9)
    rows, wer = bench["latency"]["2"], bench["wer"]
    rows["fp32-lm"] = {**rows["fp32"], "chunk_latency_ms": {"p50": 22.0}}
    rows["mpq-lm"] = {**rows["mpq"], "chunk_latency_ms": {"p50": 21.0}}
    wer["fp32-lm"] = {"streaming_wer": 0.20, "offline_wer": 0.20, "streaming_vs_fp32_p": 0.0}  # vs greedy
    wer["mpq-lm"] = {"streaming_wer": 0.25, "offline_wer": 0.25, "streaming_vs_fp32_p": 0.01,
                     "fp32_reference": "fp32-lm"}
    table = {row["label"]: row for row in results_table(bench, {"average_bits": 2.5})}
    assert "reference" not in table["fp32-lm"] and table["fp32-lm"]["lossless"] is True
    assert table["mpq-lm"]["reference"] == "fp32-lm" and table["mpq-lm"]["lossless"] is False
    assert table["mpq-lm"]["latency_ratio"] == pytest.approx(21.0 / 22.0)
    text = format_table(list(table.values()))
    assert "| FP32 + cache, LM decoder | 20.00 | — | reference (LM) |" in text
    assert "| MPQ, kernels at load + cache, LM decoder | 25.00 | +5.00 (p=0.010) | NO |" in text


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["pipeline", "--model", "models/demo", "--out", str(out), "--train-hours", "0.02",
            "--test-utterances", "12", "--verdict-utterances", "10", "--steps", "10", "--repetitions", "1",
            "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| FP32 |" in printed and "| MPQ, kernels at load + cache |" in printed
    assert "pipeline.md" in printed
    assert "| ORT int8-dynamic + cache |" in printed and "latency_ratio_mpq_over_ort_int8" in printed
    result = json.loads((out / "pipeline.json").read_text())
    assert [row["label"] for row in result["table"]] == list(ROWS) + list(LM_ROWS)  # models/lm.arpa.gz
    mpq = result["table"][len(ROWS) - 1]
    assert 2.0 <= mpq["average_bits"] <= 8.0 and mpq["file_mb"] < result["table"][0]["file_mb"]
    assert (out / "report" / "bench.md").exists() and list((out / "report").glob("bench_*.png"))
    verdicts = result["verdicts"]["verdicts"]
    assert set(verdicts) == {"grammar-text", "heldout-text"}
    for by_decoder in verdicts.values():
        assert set(by_decoder) == {"greedy", "lm"} and by_decoder["lm"]["utterances"] == 20
    assert "MPQ lossless on every corpus:" in printed and "| heldout-text | lm | 20 |" in printed
    assert "Lossless verdict with power" in (out / "pipeline.md").read_text()
    assert main(argv) == 0  # a second run finds every stage done and only reprints


def test_resuming_with_other_settings_is_refused(tmp_path):
    from speechmpq.jobs.pipeline import _check_settings

    _check_settings(PipelineConfig(out=tmp_path, steps=100))
    _check_settings(PipelineConfig(out=tmp_path, steps=100))  # same settings: resumes
    with pytest.raises(Exception, match="steps 100 -> 200.*--fresh"):
        _check_settings(PipelineConfig(out=tmp_path, steps=200))
    with pytest.raises(Exception, match="lr 2e-06 -> 0.0002"):
        _check_settings(PipelineConfig(out=tmp_path, steps=100, lr=2e-4))


def test_a_run_from_before_a_setting_existed_resumes_at_its_default(tmp_path):
    import json

    from speechmpq.jobs.pipeline import _check_settings

    _check_settings(PipelineConfig(out=tmp_path, model="models/demo"))
    older = json.loads((tmp_path / "settings.json").read_text())
    for key in ("group_size", "group_sizes", "budget"):  # settings added on 2026-12-07
        del older[key]
    (tmp_path / "settings.json").write_text(json.dumps(older))
    _check_settings(PipelineConfig(out=tmp_path, model="models/demo"))
    with pytest.raises(Exception, match="budget code-bits -> stored-bits"):
        _check_settings(PipelineConfig(out=tmp_path, model="models/demo", budget="stored-bits"))


def test_the_report_states_the_protocol_the_run_recorded():
    from speechmpq.jobs.pipeline import PROTOCOL
    from speechmpq.jobs.pipeline_report import markdown

    committed = Path(__file__).resolve().parents[2] / "results" / "pipeline" / "pipeline.json"
    result = json.loads(committed.read_text())  # made before the protocol was recorded
    assert "Judged on" not in markdown(result)
    assert f"Judged on {PROTOCOL['judged_on']}" in markdown({**result, "protocol": PROTOCOL})


def test_a_whisper_model_gets_its_dev_chosen_blocks_and_rows_without_the_front_end_cache(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper_ctc"}))
    cfg = PipelineConfig(model=tmp_path)
    assert (cfg.granularity, cfg.group_size) == ("per-group", 128)
    assert PipelineConfig(model=tmp_path, granularity="per-channel").granularity == "per-channel"
    assert PipelineConfig(model=tmp_path / "nowhere").granularity == "per-channel"
    rows = bench_rows(cache=False, lm=True)
    assert list(rows) == ["fp32", "ort-int8-dynamic", "ort-int4-rtn", "mpq", "fp32-lm", "mpq-lm"]
    assert all(cache == "off" for _, cache, _ in rows.values())
    bench = _bench(0.20, 0.21, 0.5)
    table = results_table(bench, {"average_bits": 4.0}, rows)
    assert [row["system"] for row in table] == ["FP32", "MPQ, kernels at load"]


def test_a_missing_real_speech_manifest_is_refused_in_one_line(tmp_path, capsys):
    argv = ["pipeline", "--model", "models/demo", "--out", str(tmp_path / "run"), "--real-speech",
            str(tmp_path / "nope.tsv")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.tsv: no such manifest" in err
    assert main([*argv[:-2], "--real-lm", str(tmp_path / "nope.npz")]) == 1
    assert "nope.npz: no such LM file" in capsys.readouterr().err


def test_the_rows_follow_the_exported_graph_s_front_end_cache():
    from speechmpq.jobs.pipeline import has_frontend_cache

    models = Path(__file__).resolve().parents[2] / "models"
    assert has_frontend_cache(models / "demo-mpq.onnx") is True
    assert has_frontend_cache(models / "whisper-base-ctc-4bit.onnx") is False  # Whisper's log-mel: none
