"""speechmpq quantize end to end on the tiny corpus: budget, save/load, resume, model families, DDP."""

import json
import subprocess
import sys

import pytest
import torch

from speechmpq import bitplan
from speechmpq.cli import main
from speechmpq.train.models import build_model, load_model, save_model
from speechmpq.train.qmodel import save_quantized
from speechmpq.train.quantize_config import QuantizeConfig
from speechmpq.train.supernet import SupernetConfig, finalize, plan_layers, prepare_supernet


def _tiny_model_dir(path, model_type=None, dropout=None):
    model = build_model("tiny", model_type, seed=0)
    if dropout is not None:
        for key in ("hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout"):
            setattr(model.config, key, dropout)
    return save_model(model, path)


def _quantize(tiny_corpus, model_dir, out, *extra):
    return main(["quantize", "--model", str(model_dir), "--data", str(tiny_corpus / "train"),
                 "--out", str(out), "--batch-seconds", "16", "--workers", "0", "--log-every", "1",
                 "--checkpoint-every", "2", "--quiet", *extra])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return _tiny_model_dir(tmp_path_factory.mktemp("model") / "tiny")


@pytest.mark.parametrize("granularity", ["per-tensor", "per-channel"])
def test_quantized_model_save_then_load_gives_identical_logits(tmp_path, granularity):
    model = build_model("tiny", seed=1).eval()
    prepare_supernet(model, SupernetConfig(granularity=granularity,
                                           layers={"lm_head": 8, **SupernetConfig().layers}))
    finalize(model)
    plan = bitplan.make_plan(plan_layers(model), "one-stage", [2, 4, 8], granularity, 4.0, [3.5, 4.0])
    save_quantized(model, plan, tmp_path / "q")
    loaded = load_model(tmp_path / "q")
    audio = torch.randn(2, 12000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(audio).logits, loaded(audio).logits)
    assert bitplan.load(tmp_path / "q" / "bitplan.json") == plan


def test_one_stage_respects_the_budget_window_and_logs_the_search(tiny_corpus, tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert _quantize(tiny_corpus, tiny_model, out, "--target-bits", "4.0", "--window", "0.5",
                     "--steps", "8", "--pass2-steps", "2") == 0
    assert "average" in capsys.readouterr().out
    plan = bitplan.load(out / "bitplan.json")
    assert 3.5 - 1e-9 <= plan["average_bits"] <= 4.0 + 1e-9
    assert plan["method"] == "one-stage" and plan["candidates"] == [2, 4, 8] and len(plan["layers"]) == 12
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    search = [r for r in records if r.get("phase") == "search" and "step" in r]
    assert search[-1]["tau"] == pytest.approx(0.01) and search[0]["tau"] > 0.4
    assert all({"ctc", "kl", "expected_bits", "hard_bits"} <= set(r) for r in search)
    assert any(r.get("phase") == "pass2" for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["phase_seconds"]) == {"search", "pass2"} and summary["compression_seconds"] > 0
    # The quantized model directory evaluates like any other model directory.
    assert main(["eval", "--model", str(out / "model"), "--data", str(tiny_corpus / "test-clean"),
                 "--quiet"]) == 0


def test_interrupted_quantize_run_resumes_to_the_same_plan_and_weights(tiny_corpus, tiny_model, tmp_path):
    args = ("--target-bits", "3.0", "--steps", "6", "--pass2-steps", "2")
    assert _quantize(tiny_corpus, tiny_model, tmp_path / "straight", *args) == 0
    assert _quantize(tiny_corpus, tiny_model, tmp_path / "cut", *args, "--stop-at-step", "3") == 0
    assert not (tmp_path / "cut" / "bitplan.json").exists()
    assert _quantize(tiny_corpus, tiny_model, tmp_path / "cut", *args, "--stop-at-step", "7") == 0
    assert _quantize(tiny_corpus, tiny_model, tmp_path / "cut", *args) == 0
    straight, cut = (bitplan.load(tmp_path / d / "bitplan.json") for d in ("straight", "cut"))
    assert straight["layers"] == cut["layers"]
    a, b = (load_model(tmp_path / d / "model").state_dict() for d in ("straight", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", [["--method", "uniform", "--bits", "3"],
                                    ["--method", "two-stage", "--search", "kl", "--sensitivity-batches", "1"],
                                    ["--method", "two-stage", "--search", "nas"]])
def test_baselines_write_a_valid_plan(tiny_corpus, tiny_model, tmp_path, method):
    out = tmp_path / "run"
    assert _quantize(tiny_corpus, tiny_model, out, *method, "--target-bits", "3.5", "--steps", "3") == 0
    plan = bitplan.load(out / "bitplan.json")
    if "uniform" in method:
        assert {e["bits"] for e in plan["layers"].values()} == {3} and plan["average_bits"] == 3
    else:
        assert plan["average_bits"] <= 3.5 and plan["method"] == "two-stage"
        summary = json.loads((out / "summary.json").read_text())
        assert "qat" in summary["phase_seconds"] and len(summary["phase_seconds"]) == 2


@pytest.mark.parametrize("model_type", ["hubert", "wavlm"])
def test_hubert_and_wavlm_quantize_end_to_end(tiny_corpus, tmp_path, model_type):
    model_dir = _tiny_model_dir(tmp_path / model_type, model_type)
    out = tmp_path / "run"
    assert _quantize(tiny_corpus, model_dir, out, "--steps", "3", "--granularity", "per-channel") == 0
    plan = bitplan.load(out / "bitplan.json")
    assert len(plan["layers"]) == 12
    loaded = load_model(out / "model")
    assert type(loaded).__name__.lower().startswith(model_type)
    with torch.no_grad():
        assert torch.isfinite(loaded(torch.randn(1, 8000)).logits).all()


def test_impossible_settings_fail_with_one_line(tiny_corpus, tiny_model, tmp_path, capsys):
    cases = [["--target-bits", "9"], ["--method", "uniform"], ["--candidates", "1", "4"],
             ["--layer", "no.such.layer=8"], ["--window", "-1"], ["--ctc-weight", "-1"],
             ["--ctc-weight", "0", "--kl-weight", "0"]]
    for extra in cases:
        capsys.readouterr()
        assert _quantize(tiny_corpus, tiny_model, tmp_path / "x", "--steps", "2", *extra) == 1, extra
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1, (extra, err)


def test_ctc_weight_zero_trains_on_the_teacher_alone(tiny_corpus, tiny_model, tmp_path):
    out = tmp_path / "run"
    assert _quantize(tiny_corpus, tiny_model, out, "--steps", "2", "--ctc-weight", "0", "--log-every", "1",
                     "--kl-weight", "2") == 0
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "kl" in r]
    assert steps
    for r in steps:  # the CTC loss is still measured and logged, but not trained on
        assert r["ctc"] > 0
        assert r["loss"] == pytest.approx(2 * r["kl"] + r["size_term"], rel=1e-6)


@pytest.mark.slow
def test_two_processes_match_one_on_the_same_global_batch(tiny_corpus, tmp_path):
    model_dir = _tiny_model_dir(tmp_path / "m", dropout=0.0)
    common = ["--model", str(model_dir), "--data", str(tiny_corpus / "train"), "--batch-seconds", "32",
              "--workers", "0", "--quiet", "--no-bf16", "--steps", "4", "--threads", "1",
              "--min-batch-utterances", "2", "--log-every", "1"]
    for method in (["--method", "uniform", "--bits", "4"], ["--method", "one-stage"]):
        name = method[1]
        assert main(["quantize", *common, *method, "--out", str(tmp_path / f"one-{name}")]) == 0
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
             "-m", "speechmpq", "quantize", *common, *method, "--out", str(tmp_path / f"two-{name}")],
            capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        one = bitplan.load(tmp_path / f"one-{name}" / "bitplan.json")
        two = bitplan.load(tmp_path / f"two-{name}" / "bitplan.json")
        assert one["layers"] == two["layers"]
        logs = [(tmp_path / f"{n}-{name}" / "train_log.jsonl").read_text().splitlines()
                for n in ("one", "two")]
        records = [[r for r in map(json.loads, log) if "ctc" in r] for log in logs]
        assert len(records[0]) == len(records[1]) == 4
        for part in ("ctc", "kl"):
            assert [r[part] for r in records[0]] == pytest.approx([r[part] for r in records[1]],
                                                                  rel=1e-4, abs=1e-8)
        # Adam turns float noise in near-zero gradients into +-lr steps on a few elements; a real
        # mismatch (unaveraged or double-counted gradients) moves many by up to lr x steps = 8e-4.
        a, b = (load_model(tmp_path / f"{n}-{name}" / "model").state_dict() for n in ("one", "two"))
        for key in a:
            assert torch.allclose(a[key], b[key], atol=1e-4), key


def test_the_bits_window_keeps_its_file_key_in_config_dicts():
    cfg = QuantizeConfig(model="m", train_data="d", out="o", target_bits=4.0, bits_window=0.5)
    data = cfg.to_dict()
    assert data["window"] == 0.5 and "bits_window" not in data  # checkpoints and logs say "window"
    assert list(data).index("window") == [f for f in QuantizeConfig.__dataclass_fields__].index("bits_window")
    assert QuantizeConfig.from_dict(data) == cfg and cfg.bits_window_range == [3.5, 4.0]


def test_a_stored_bits_budget_counts_the_scales_and_lands_in_its_window(tiny_corpus, tiny_model, tmp_path):
    model = build_model("tiny", seed=0)
    prepare_supernet(model, SupernetConfig(granularity="per-group", group_size=16))
    code, stored = bitplan_summary(model, False), bitplan_summary(model, True)
    assert stored["hard"] == pytest.approx(code["hard"] + 32 / 16)  # one fp32 scale per 16 weights
    out = tmp_path / "run"
    # stored bits of {2, 4, 8} codes in blocks of 16: {4, 6, 10}; the window [5, 6] allows only 4-bit codes
    assert _quantize(tiny_corpus, tiny_model, out, "--granularity", "per-group", "--group-size", "16",
                     "--budget", "stored-bits", "--target-bits", "6.0", "--window", "1.0",
                     "--steps", "4") == 0
    plan = bitplan.load(out / "bitplan.json")
    assert plan["budget"] == "stored-bits"
    assert 5.0 - 1e-9 <= bitplan.stored_bits_per_weight(plan) <= 6.0 + 1e-9
    with pytest.raises(ValueError, match="knapsack"):
        QuantizeConfig(model="m", train_data="d", out="o", method="two-stage", search="kl",
                       budget="stored-bits")
    assert "budget" not in QuantizeConfig(model="m", train_data="d", out="o").to_dict()  # old runs resume


def bitplan_summary(model, stored):
    from speechmpq.train.supernet import bits_summary

    return bits_summary(model, stored)


def test_the_step_sizes_may_learn_at_their_own_rate():
    from speechmpq.train.quantize_step import build_optimizer

    model = build_model("tiny", seed=0)
    prepare_supernet(model, SupernetConfig())
    cfg = QuantizeConfig(model="m", train_data="d", out="o", lr=2e-6, step_lr=2e-4)
    optimizer, _ = build_optimizer(model, cfg, steps=10)
    weights, steps, _ = optimizer.param_groups
    assert weights["initial_lr"] == 2e-6 and steps["initial_lr"] == 2e-4 and steps["params"]
    assert "step_lr" not in QuantizeConfig(model="m", train_data="d", out="o").to_dict()
    with pytest.raises(ValueError, match="step_lr"):
        QuantizeConfig(model="m", train_data="d", out="o", step_lr=0.0)
