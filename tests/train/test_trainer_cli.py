"""train-fp, eval and eval --compare through the command line, on the tiny corpus and model."""

import json

import pytest

from speechmpq.cli import main
from speechmpq.train.trainer import TrainConfig


def _train(tiny_corpus, out, steps):
    return main([
        "train-fp", "--data", str(tiny_corpus / "train"), "--dev", str(tiny_corpus / "dev"),
        "--out", str(out), "--preset", "tiny", "--steps", str(steps), "--warmup-steps", "2",
        "--eval-every", "4", "--checkpoint-every", "2", "--batch-seconds", "40", "--workers", "0",
        "--quiet",
    ])  # fmt: skip


def test_train_resume_eval_and_compare(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tiny_corpus, run, 4) == 0
    assert _train(tiny_corpus, run, 6) == 0  # resumes from the step-4 checkpoint
    events = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [e.get("event") for e in events if "event" in e] == ["start", "done", "resume", "done"]
    assert next(e for e in events if e.get("event") == "resume")["step"] == 4
    assert (run / "final" / "model.safetensors").is_file()
    assert any("dev_cer" in e for e in events)

    capsys.readouterr()
    assert main(["eval", "--model", str(run / "final"), "--data", str(tiny_corpus / "test-clean"),
                 "--out", str(tmp_path / "a"), "--quiet", "--table"]) == 0
    printed = capsys.readouterr().out
    assert "WER %" in printed and "seen" in printed
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["utterances"] == 6 and summary["cer"] >= 0.0
    assert set(summary["groups"]) <= {"seen", "unseen"}
    rows = (tmp_path / "a" / "utterances.tsv").read_text().splitlines()
    assert rows[0].startswith("utt_id\tgroup") and len(rows) == 7

    assert main(["eval", "--compare", str(tmp_path / "a" / "utterances.tsv"),
                 str(tmp_path / "a" / "utterances.tsv"), "--json", str(tmp_path / "c.json")]) == 0
    comparison = json.loads((tmp_path / "c.json").read_text())
    assert comparison["mapsswe"]["p_value"] == 1.0 and not comparison["mapsswe"]["significant"]


@pytest.mark.parametrize("argv", [
    ["eval", "--model", "/nonexistent/model", "--data", "/nonexistent/data"],
    ["eval", "--compare", "/nonexistent/a.tsv", "/nonexistent/b.tsv"],
    ["corpus", "--out", "/tmp/x", "--hours", "0"],
    ["train-fp", "--data", "/nonexistent", "--out", "/tmp/x", "--steps", "0"],
])  # fmt: skip
def test_bad_input_gives_one_line_error_and_exit_1(argv, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_train_config_validation():
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(train_data="x", dev_data=None, out="y", steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="batch_seconds"):
        TrainConfig(train_data="x", dev_data=None, out="y", batch_seconds=4)
