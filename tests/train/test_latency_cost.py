"""quantize --cost latency: per-candidate latency from a kernel table, the expected-latency term and
its gradient, and a run end to end on the tiny corpus."""

import json

import pytest
import torch
from test_quantize import _quantize, tiny_model  # noqa: F401  (pytest fixture reuse)

from speechmpq.errors import SpeechmpqError
from speechmpq.train.latency_cost import latency_summary, latency_term, layer_latencies
from speechmpq.train.models import build_model
from speechmpq.train.supernet import SupernetConfig, prepare_supernet, quantizers

# ms per call by kernel: 2-bit fastest, 8-bit through MatMulNBits slowest, int8-dynamic in between
TIMES = {
    "fp32": 1.0,
    "nbits2-block32": 0.2,
    "nbits4-block32": 0.5,
    "nbits8-block32": 1.5,
    "int8-dynamic": 0.8,
}


def _table(path, isa=("avx2",)):
    kernels = [{"kernel": k, "accuracy_level": 0, "median_ms": t} for k, t in TIMES.items()]
    shapes = [(32, 32), (32, 64), (64, 32)]  # the tiny preset: hidden 32, FFN 64
    table = {
        "format": "speechmpq-kernels/1",
        "preset": "tiny",
        "machine": {"isa": list(isa), "cpu": "t", "date": "d"},
        "linear": [{"k": k, "n": n, "per_block": 1, "kernels": kernels} for k, n in shapes],
    }
    path.write_text(json.dumps(table))
    return path


def _supernet():
    model = build_model("tiny", seed=0)
    prepare_supernet(model, SupernetConfig())
    return model


def test_each_candidate_costs_its_fastest_kernel_and_full_range_8_bit_avoids_int8_dynamic(tmp_path):
    model = _supernet()
    latencies = layer_latencies(model, _table(tmp_path / "t.json"))
    assert len(latencies) == 12
    assert all(e["by_bits"] == {2: 0.2, 4: 0.5, 8: 1.5} and e["fp32"] == 1.0 for e in latencies.values())
    with_vnni = layer_latencies(model, _table(tmp_path / "v.json", isa=("avx2", "avx512_vnni")))
    assert all(e["by_bits"][8] == 0.8 for e in with_vnni.values())


def test_expected_latency_is_differentiable_and_pulls_toward_faster_candidates(tmp_path):
    model = _supernet()
    latencies = layer_latencies(model, _table(tmp_path / "t.json"))
    summary = latency_summary(model, latencies)
    assert summary["hard"] == pytest.approx(1.5)  # initial logits lean to 8 bits
    assert 0.7 < float(summary["expected"]) < 0.8  # about the mean of 0.2, 0.5, 1.5
    term, direction = latency_term(summary, budget=0.7, weight=1.0)
    assert direction == "down"
    term.backward()
    for quantizer in quantizers(model).values():
        if quantizer.searched:
            grad = quantizer.logits.grad
            assert grad[0] < 0 < grad[2]  # descending the loss raises the 2-bit logit, lowers the 8-bit one
    assert latency_term({"expected": torch.tensor(0.5), "hard": 0.5}, 0.7, 1.0) == (0.0, "off")


def test_shapes_missing_from_the_table_are_an_error(tmp_path):
    path = _table(tmp_path / "t.json")
    table = json.loads(path.read_text())
    table["linear"] = table["linear"][:1]
    path.write_text(json.dumps(table))
    with pytest.raises(SpeechmpqError, match="no kernel timings"):
        layer_latencies(_supernet(), path)


def test_quantize_with_latency_cost_end_to_end(tiny_corpus, tiny_model, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    table = _table(tmp_path / "t.json")
    assert (
        _quantize(
            tiny_corpus,
            tiny_model,
            out,
            "--steps",
            "6",
            "--cost",
            "latency",
            "--kernel-table",
            str(table),
            "--latency-budget",
            "0.5",
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cost"] == "latency" and 0.2 <= summary["predicted_latency_ratio"] <= 1.5
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    search = [r for r in records if r.get("phase") == "search" and "step" in r]
    assert all("hard_latency_ratio" in r and "latency-" in r["size_direction"] for r in search)
    capsys.readouterr()
    assert _quantize(tiny_corpus, tiny_model, tmp_path / "bad", "--steps", "2", "--cost", "latency") == 1
    assert "needs --kernel-table" in capsys.readouterr().err
