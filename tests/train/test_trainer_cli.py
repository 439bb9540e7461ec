"""train-fp, eval and eval --compare through the command line, on the tiny corpus and model."""

import json

import pytest

from speechmpq.cli import main
from speechmpq.train.trainer import TrainConfig


def _train(tiny_corpus, out, steps, *extra):
    return main([
        "train-fp", "--data", str(tiny_corpus / "train"), "--dev", str(tiny_corpus / "dev"),
        "--out", str(out), "--preset", "tiny", "--steps", str(steps), "--warmup-steps", "2",
        "--eval-every", "4", "--checkpoint-every", "2", "--batch-seconds", "16",
        "--max-utterance-seconds", "16", "--workers", "0", "--quiet", *extra,
    ])  # fmt: skip


def test_interrupted_and_resumed_run_matches_uninterrupted_run(tiny_corpus, tmp_path):
    import torch

    assert _train(tiny_corpus, tmp_path / "straight", 7) == 0
    assert _train(tiny_corpus, tmp_path / "cut", 7, "--stop-at-step", "3") == 0
    assert not (tmp_path / "cut" / "final").exists()
    assert _train(tiny_corpus, tmp_path / "cut", 7) == 0
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    resumed = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert straight["state"]["epoch"] >= 1  # the run crossed an epoch boundary
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name


def test_resume_with_other_settings_is_refused(tiny_corpus, tmp_path, capsys):
    assert _train(tiny_corpus, tmp_path / "run", 4, "--stop-at-step", "2") == 0
    capsys.readouterr()
    assert _train(tiny_corpus, tmp_path / "run", 4, "--seed", "5") == 1
    assert "other settings" in capsys.readouterr().err


def test_train_resume_eval_and_compare(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tiny_corpus, run, 6, "--stop-at-step", "4") == 0
    assert _train(tiny_corpus, run, 6) == 0  # resumes from the step-4 checkpoint
    events = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [e.get("event") for e in events if "event" in e] == ["start", "stopped", "resume", "done"]
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

    # A "system B" that drops the last word of every utterance is significantly worse.
    lines = (tmp_path / "a" / "utterances.tsv").read_text().splitlines()
    header, rows = lines[0], [line.split("\t") for line in lines[1:]]
    for row in rows:
        row[-1] = " ".join(row[-2].split()[:-1])  # hypothesis = reference minus its last word
    (tmp_path / "ref_minus_one.tsv").write_text("\n".join([header] + ["\t".join(r) for r in rows]))
    for row in rows:
        row[-1] = row[-2]  # perfect
    (tmp_path / "perfect.tsv").write_text("\n".join([header] + ["\t".join(r) for r in rows]))
    capsys.readouterr()
    assert main(["eval", "--compare", str(tmp_path / "perfect.tsv"),
                 str(tmp_path / "ref_minus_one.tsv")]) == 0
    printed = capsys.readouterr().out
    # zero variance (one more error in every segment): the exact sign test, p = 2 * 0.5^n < 0.05
    # for these >= 6 segments (sc_stats would have said p = 1, "no evidence")
    assert "B worse" in printed


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


def _poison_training_losses(monkeypatch, poisoned_calls):
    """Models built by train-fp give a NaN loss on the training forward calls numbered in
    ``poisoned_calls`` (1-based; None: every call)."""
    from speechmpq.train import models

    build = models.build_model

    def build_poisoned(*args, **kwargs):
        model = build(*args, **kwargs)
        forward, calls = model.forward, [0]

        def poisoned(*a, **k):
            output = forward(*a, **k)
            if model.training:
                calls[0] += 1
                if poisoned_calls is None or calls[0] in poisoned_calls:
                    output.loss = output.loss * float("nan")
            return output

        model.forward = poisoned
        return model

    monkeypatch.setattr(models, "build_model", build_poisoned)


def test_a_non_finite_step_is_skipped_and_counted(tiny_corpus, tmp_path, monkeypatch):
    import torch

    _poison_training_losses(monkeypatch, {2})
    assert _train(tiny_corpus, tmp_path / "run", 4) == 0
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert checkpoint["state"]["skipped_steps"] == 1 and checkpoint["state"]["step"] == 4
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())


def test_steps_that_stay_non_finite_stop_the_run_with_one_line(tiny_corpus, tmp_path, monkeypatch, capsys):
    from speechmpq.train import trainer

    _poison_training_losses(monkeypatch, None)
    monkeypatch.setattr(trainer, "MAX_SKIPPED_IN_A_ROW", 3)
    assert _train(tiny_corpus, tmp_path / "run", 6) == 1
    err = capsys.readouterr().err
    assert "3 steps in a row had a non-finite loss" in err and "Traceback" not in err


@pytest.mark.slow
def test_training_reduces_ctc_loss(tiny_corpus, tmp_path):
    assert _train(tiny_corpus, tmp_path / "run", 80, "--eval-every", "80") == 0
    losses = [json.loads(line)["loss"] for line in
              (tmp_path / "run" / "train_log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert losses[-1] < 0.8 * losses[0], losses
