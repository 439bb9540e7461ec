"""Per-group step sizes: the quantization math, the supernet, the saved model and the quantize CLI."""

import json

import pytest
import torch

from speechmpq import bitplan
from speechmpq.cli import main
from speechmpq.train.models import build_model, load_model, save_model
from speechmpq.train.qmodel import read_quantized, save_quantized
from speechmpq.train.quant import (
    dequantize,
    fake_quant_candidates_ste,
    fake_quant_ste,
    mse_step_size,
    qrange,
    quantize,
)
from speechmpq.train.supernet import (
    SupernetConfig,
    finalize,
    integer_weights,
    plan_layers,
    prepare_supernet,
    quantizers,
)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group_size", [16, 32, 64])
def test_per_group_fake_quant_equals_dequantized_integers_exactly(bits, group_size):
    weight = torch.randn(24, 128, generator=torch.Generator().manual_seed(bits)) ** 3
    step = mse_step_size(weight, bits, per_channel=False, group_size=group_size)
    assert step.shape == (24, 128 // group_size)
    codes = quantize(weight, step, bits, group_size)
    low, high = qrange(bits)
    assert codes.shape == weight.shape and int(codes.min()) >= low and int(codes.max()) <= high
    fake = fake_quant_ste(weight, step.clone().requires_grad_(), bits, group_size=group_size)
    assert torch.equal(fake, dequantize(codes, step, group_size))
    # the step repeated group_size times along the input axis, written out by hand
    assert torch.equal(fake, codes.float() * step.repeat_interleave(group_size, dim=1))


def test_each_group_gets_its_own_step():
    weight = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    weight[:, 32:] *= 100  # the second group of every row is far wider
    step = mse_step_size(weight, 4, per_channel=False, group_size=32)
    per_group_error = ((dequantize(quantize(weight, step, 4, 32), step, 32) - weight) ** 2)[:, :32].sum()
    channel = mse_step_size(weight, 4, per_channel=True)
    per_channel_error = ((dequantize(quantize(weight, channel, 4), channel) - weight) ** 2)[:, :32].sum()
    assert (step[:, 1] > 20 * step[:, 0]).all() and per_group_error < per_channel_error / 100
    # each group's step is the one the group alone would get
    for row in range(4):
        for group in range(2):
            alone = mse_step_size(weight[row: row + 1, group * 32: (group + 1) * 32], 4, per_channel=False)
            assert torch.allclose(step[row, group], alone.reshape(()))


def test_per_group_batched_candidates_equal_one_at_a_time_values_and_gradients():
    weight = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    bits = (2, 4, 8)
    steps = torch.stack([mse_step_size(weight, b, False, group_size=32) for b in bits])  # (3, 8, 2)
    batched_w, batched_s = weight.clone().requires_grad_(), steps.clone().requires_grad_()
    out = fake_quant_candidates_ste(batched_w, batched_s, bits, group_size=32)
    assert out.shape == (3, 8, 64)
    out.pow(2).sum().backward()
    single_w, single_s = weight.clone().requires_grad_(), steps.clone().requires_grad_()
    singles = torch.stack([fake_quant_ste(single_w, single_s[i], b, group_size=32)
                           for i, b in enumerate(bits)])
    singles.pow(2).sum().backward()
    assert torch.equal(out, singles)
    assert torch.allclose(batched_w.grad, single_w.grad) and torch.allclose(batched_s.grad, single_s.grad)
    assert batched_s.grad.abs().sum() > 0


def test_supernet_config_checks_the_group_size():
    assert SupernetConfig(granularity="per-group", group_size=32).to_dict()["group_size"] == 32
    assert "group_size" not in SupernetConfig().to_dict()  # older run configs still compare equal
    cfg = SupernetConfig(granularity="per-group", group_size=64)
    assert SupernetConfig.from_dict(cfg.to_dict()) == cfg
    for bad in (dict(granularity="per-group"), dict(granularity="per-group", group_size=48),
                dict(granularity="per-group", group_size=8), dict(granularity="per-channel", group_size=32)):
        with pytest.raises(ValueError, match="group_size"):
            SupernetConfig(**bad)
    model = build_model("tiny", seed=0)
    with pytest.raises(ValueError, match="multiple of group_size 64"):  # q_proj has 32 inputs
        prepare_supernet(model, SupernetConfig(granularity="per-group", group_size=64))
    conv = "wav2vec2.feature_extractor.conv_layers.1.conv"
    with pytest.raises(ValueError, match="nn.Linear"):
        prepare_supernet(build_model("tiny", seed=0),
                         SupernetConfig(granularity="per-group", group_size=16, layers={conv: 4}))


def test_per_group_model_saves_reads_back_and_gives_identical_logits(tmp_path):
    model = build_model("tiny", seed=1).eval()
    prepare_supernet(model, SupernetConfig(granularity="per-group", group_size=32))
    finalize(model)
    layers = plan_layers(model)
    assert all(e["scale_shape"] == [e["shape"][0], e["shape"][1] // 32] for e in layers.values())
    plan = bitplan.make_plan(layers, "one-stage", [2, 4, 8], "per-group", 4.0, [3.5, 4.0], group_size=32)
    save_quantized(model, plan, tmp_path / "q")
    quantized = read_quantized(tmp_path / "q")
    assert quantized.plan == plan and quantized.plan["format_version"] == 2
    modules = dict(quantized.model.named_modules())
    integers = integer_weights(model)
    for name, entry in plan["layers"].items():
        assert list(quantized.scales[name].shape) == entry["scale_shape"]
        assert torch.equal(torch.from_numpy(quantized.codes[name]), integers[name][0])
        expanded = quantized.scales[name].repeat(32, axis=1)
        assert (modules[name].weight.detach().numpy() == quantized.codes[name] * expanded).all()
    audio = torch.randn(2, 12000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(audio).logits, load_model(tmp_path / "q")(audio).logits)


@pytest.mark.parametrize("method", [
    ["--method", "one-stage", "--target-bits", "4.0", "--window", "0.5"],
    ["--method", "uniform", "--bits", "4"],
    ["--method", "two-stage", "--search", "kl", "--sensitivity-batches", "1"],
])
def test_quantize_cli_writes_per_group_scales_for_every_method(tiny_corpus, tmp_path, method):
    model_dir = save_model(build_model("tiny", seed=0), tmp_path / "tiny")
    out = tmp_path / "run"
    assert main(["quantize", "--model", str(model_dir), "--data", str(tiny_corpus / "train"),
                 "--out", str(out), "--batch-seconds", "16", "--workers", "0", "--quiet",
                 "--granularity", "per-group", "--group-size", "32", "--steps", "2", "--pass2-steps", "1",
                 *method]) == 0
    plan = bitplan.load(out / "bitplan.json")
    assert plan["granularity"] == "per-group" and plan["group_size"] == 32 and plan["format_version"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stored_bits_per_weight"] == pytest.approx(bitplan.stored_bits_per_weight(plan), abs=1e-6)
    assert summary["stored_bits_per_weight"] == pytest.approx(summary["average_bits"] + 1.0, abs=1e-6)
    quantized = read_quantized(out / "model")
    for name, entry in plan["layers"].items():
        assert quantized.scales[name].shape == (entry["shape"][0], entry["shape"][1] // 32)


def test_quantizers_carry_the_group_size():
    model = build_model("tiny", seed=0)
    prepare_supernet(model, SupernetConfig(granularity="per-group", group_size=32, candidates=(2, 8)))
    for quantizer in quantizers(model).values():
        assert quantizer.group_size == 32 and quantizer.steps.shape[0] == 2 and quantizer.steps.dim() == 3
