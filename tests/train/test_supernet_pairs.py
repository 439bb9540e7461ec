"""(bits, block) candidate pairs: each candidate quantizes in its own block size (its steps averaged
over its blocks), the search pays for its own scales, the chosen pair's block reaches the plan, the
saved model and the exported graph, and ORT computes what PyTorch does."""

import numpy as np
import onnx
import pytest
import torch

from speechmpq import bitplan
from speechmpq.export import ExportConfig, Source, export_onnx
from speechmpq.runtime import OnnxCTCModel, SessionConfig
from speechmpq.train.models import build_model, save_model
from speechmpq.train.qmodel import read_quantized, save_quantized
from speechmpq.train.quant import fake_quant_ste, mse_step_size
from speechmpq.train.supernet import (
    SupernetConfig,
    bits_summary,
    finalize,
    fix_bits,
    plan_layers,
    prepare_supernet,
    quantizers,
)

PAIRS = SupernetConfig(candidates=(4, 2), granularity="per-group", group_sizes=(32, 16))


def test_pairs_are_sorted_together_and_checked():
    assert PAIRS.candidates == (2, 4) and PAIRS.group_sizes == (16, 32) and PAIRS.group_size == 16
    assert SupernetConfig.from_dict(PAIRS.to_dict()) == PAIRS
    assert "group_sizes" not in SupernetConfig().to_dict()  # older run configs resume unchanged
    for bad in ({"group_sizes": (16,)}, {"group_sizes": (16, 24)}, {"granularity": "per-channel"}):
        with pytest.raises(ValueError):
            SupernetConfig(**{"candidates": (2, 4), "granularity": "per-group", "group_sizes": (16, 32),
                              **bad})


def test_each_candidate_quantizes_in_its_own_blocks():
    model = build_model("tiny", seed=1).eval()
    reference = {n: m.weight.detach().clone() for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear)}
    prepare_supernet(model, PAIRS)
    name, quantizer = next(iter(quantizers(model).items()))
    weight = reference[name]
    for index, (bits, size) in enumerate(zip((2, 4), (16, 32), strict=True)):
        with torch.no_grad():
            quantizer.logits.zero_()
            quantizer.logits[index] = 1.0
            expected = fake_quant_ste(weight, mse_step_size(weight, bits, False, group_size=size), bits,
                                      group_size=size)
            assert torch.equal(quantizer(weight), expected)


def test_the_stored_size_counts_each_pairs_scales():
    model = build_model("tiny", seed=1)
    prepare_supernet(model, PAIRS)
    fix_bits(model, {n: 4 for n in quantizers(model)})
    assert bits_summary(model, True)["hard"] == pytest.approx(4 + 32 / 32)
    model = build_model("tiny", seed=1)
    prepare_supernet(model, PAIRS)
    fix_bits(model, {n: 2 for n in quantizers(model)})
    assert bits_summary(model, True)["hard"] == pytest.approx(2 + 32 / 16)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs")
    model = build_model("tiny", seed=5).eval()
    prepare_supernet(model, PAIRS)
    for i, quantizer in enumerate(quantizers(model).values()):  # alternate the pairs
        with torch.no_grad():
            quantizer.logits[i % 2] = 1.0
    finalize(model)
    plan = bitplan.make_plan(plan_layers(model), "one-stage", [2, 4], "per-group", 3.0, [2.5, 3.0],
                             group_size=16)
    save_model(build_model("tiny", seed=5), path / "fp")
    return model, plan, save_quantized(model, plan, path / "q", source_dir=path / "fp"), path


def test_the_plan_and_saved_model_carry_each_layers_block(mixed):
    model, plan, model_dir, _ = mixed
    assert plan["format_version"] == 3
    sizes = {e["bits"]: e["group_size"] for e in plan["layers"].values()}
    assert sizes == {2: 16, 4: 32}
    for entry in plan["layers"].values():
        assert entry["scale_shape"] == [entry["shape"][0], entry["shape"][1] // entry["group_size"]]
    loaded = read_quantized(model_dir)
    audio = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(audio).logits, loaded.model(audio).logits)


def test_the_graph_dequantizes_each_layer_in_its_blocks_and_ort_agrees(mixed):
    model, plan, model_dir, path = mixed
    export_onnx(Source(model_dir=model_dir), path / "m.onnx", ExportConfig(kernel_table="none"),
                progress=False)
    graph = onnx.load(str(path / "m.onnx"))
    blocks = sorted({a.i for n in graph.graph.node if n.op_type == "DequantizeLinear"
                     for a in n.attribute if a.name == "block_size"})
    assert blocks == [16, 32]
    audio = np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1
    ours = OnnxCTCModel(path / "m.onnx", SessionConfig(threads=1)).logits(audio)[0]
    with torch.no_grad():
        theirs = model(torch.from_numpy(audio)[None]).logits[0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-4, rtol=1e-3)


def test_a_search_over_pairs_runs_from_the_command_line(tiny_corpus, tmp_path):
    from speechmpq.cli import main

    save_model(build_model("tiny", seed=0), tmp_path / "fp")
    # stored bits of the pairs: 2 + 32/16 = 4 and 4 + 32/32 = 5; the window [4.4, 4.6] needs a mix
    assert main(["quantize", "--model", str(tmp_path / "fp"), "--data", str(tiny_corpus / "train"),
                 "--out", str(tmp_path / "run"), "--granularity", "per-group", "--candidates", "2", "4",
                 "--group-sizes", "16", "32", "--budget", "stored-bits", "--target-bits", "4.6",
                 "--window", "0.2", "--steps", "3", "--pass2-steps", "1", "--batch-seconds", "16",
                 "--workers", "0", "--quiet"]) == 0
    plan = bitplan.load(tmp_path / "run" / "bitplan.json")
    assert {(e["bits"], e["group_size"]) for e in plan["layers"].values()} == {(2, 16), (4, 32)}
    assert 4.4 - 1e-9 <= bitplan.stored_bits_per_weight(plan) <= 4.6 + 1e-9
    assert read_quantized(tmp_path / "run" / "model").plan == plan
