"""Quantizer math, the supernet layer, integer export and the knapsack: each checked two ways."""

import itertools

import pytest
import torch

from speechmpq.bitplan import SEARCHED_LINEAR_KINDS
from speechmpq.train.models import build_model
from speechmpq.train.quant import dequantize, fake_quant_ste, mse_step_size, qrange, quantize
from speechmpq.train.sensitivity import knapsack
from speechmpq.train.supernet import (
    TRANSFORMER_LINEARS,
    SupernetConfig,
    WeightQuantizer,
    finalize,
    float_weight,
    integer_weights,
    prepare_supernet,
    quantizers,
    resolve_layers,
)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("per_channel", [False, True])
def test_fake_quant_equals_dequantized_integers_and_lies_on_the_grid(bits, per_channel):
    weight = torch.randn(24, 40, generator=torch.Generator().manual_seed(bits))
    step = mse_step_size(weight, bits, per_channel)
    assert step.shape == ((24, 1) if per_channel else (1, 1))
    codes = quantize(weight, step, bits)
    low, high = qrange(bits)
    assert codes.dtype == torch.int8 and int(codes.min()) >= low and int(codes.max()) <= high
    assert torch.equal(fake_quant_ste(weight, step.requires_grad_(), bits), dequantize(codes, step))


def test_mse_step_beats_no_clipping_and_gradients_flow():
    weight = torch.randn(64, 64, generator=torch.Generator().manual_seed(0)) ** 3  # heavy tails
    for bits in (2, 4):
        step = mse_step_size(weight, bits, per_channel=False)
        no_clip = weight.abs().max() / qrange(bits)[1]
        errors = [float(((dequantize(quantize(weight, s, bits), s) - weight) ** 2).sum())
                  for s in (step, no_clip)]
        assert errors[0] < errors[1]
    weight.requires_grad_()
    step = mse_step_size(weight, 4, True).requires_grad_()
    fake_quant_ste(weight, step, 4).pow(2).sum().backward()
    assert weight.grad.abs().sum() > 0 and step.grad.abs().sum() > 0


@pytest.mark.parametrize("training", [False, True])
def test_supernet_with_one_hot_choice_equals_plain_fake_quant(training):
    weight = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    quantizer = WeightQuantizer(weight, (2, 4, 8), per_channel=True, learn_steps=True,
                                logit_init=(0.0, 0.0, 0.02), searched=True)
    quantizer.train(training)
    for index, bits in enumerate((2, 4, 8)):
        with torch.no_grad():
            quantizer.logits.copy_(torch.tensor([-5.0, -5.0, -5.0]))
            quantizer.logits[index] = 5.0
        mixed = quantizer(weight)
        assert torch.equal(mixed, fake_quant_ste(weight, quantizer.steps[index], bits))
    if training:  # soft (Gumbel-softmax) gradients reach every logit
        quantizer.tau = 0.5
        with torch.no_grad():
            quantizer.logits.copy_(torch.tensor([0.0, 0.0, 0.02]))
        quantizer(weight).pow(2).sum().backward()
        assert quantizer.logits.grad is not None and torch.all(quantizer.logits.grad != 0)


def test_integer_weights_times_scales_reproduce_the_fake_quant_weights():
    model = build_model("tiny")
    prepare_supernet(model, SupernetConfig(granularity="per-channel"))
    bits = finalize(model)
    modules = dict(model.named_modules())
    integers = integer_weights(model)
    assert set(integers) == set(bits) and len(bits) == 12  # 2 layers x 6 matrices
    for name, (codes, scale, width) in integers.items():
        assert width == bits[name]
        assert torch.equal(dequantize(codes, scale), modules[name].weight)  # parametrized weight
        assert not torch.equal(modules[name].weight, float_weight(modules[name]))


def test_layer_rules_resolve_in_order_and_reject_unknown_names():
    model = build_model("tiny")
    resolved = resolve_layers(model, {"lm_head": 8, "re:q_proj$": "fp",
                                      **SupernetConfig().layers})
    assert resolved["lm_head"] == 8
    assert not any(name.endswith("q_proj") for name in resolved)
    assert sum(setting == "search" for setting in resolved.values()) == 10
    with pytest.raises(ValueError, match="match no"):
        resolve_layers(model, {"wav2vec2.encoder.layers.9.attention.q_proj": "search"})
    with pytest.raises(ValueError):
        SupernetConfig(candidates=(1, 4))
    with pytest.raises(ValueError):
        SupernetConfig(layers={"lm_head": 12})


def test_fixed_width_layers_outside_the_search_and_conv_layers_quantize():
    model = build_model("tiny")
    prepare_supernet(model, SupernetConfig(layers={
        "lm_head": 8, "re:pos_conv_embed.conv$": 8, **SupernetConfig().layers}))
    table = quantizers(model)
    assert table["lm_head"].logits is None and not table["lm_head"].searched
    conv = "wav2vec2.encoder.pos_conv_embed.conv"
    assert table[conv].candidates == (8,)
    with torch.no_grad():
        logits = model(torch.randn(1, 8000)).logits
    assert torch.isfinite(logits).all()


def _brute_force(costs, sizes, target):
    names = list(costs)
    best, best_bits = float("inf"), None
    budget = target * sum(sizes.values())
    for choice in itertools.product(*[sorted(costs[n]) for n in names]):
        if sum(b * sizes[n] for b, n in zip(choice, names, strict=True)) <= budget + 1e-9:
            cost = sum(costs[n][b] for b, n in zip(choice, names, strict=True))
            if cost < best:
                best, best_bits = cost, dict(zip(names, choice, strict=True))
    return best, best_bits


def test_knapsack_finds_the_optimum_where_greedy_does_not():
    # Greedy "most sensitive layer gets 8 bits first" picks big_a = 8 and must then push both small
    # layers to 2 bits (cost 10 + 2 x 6 = 22... ); the optimum spends the budget differently.
    sizes = {"big_a": 4, "small_b": 1, "small_c": 1}
    costs = {"big_a": {2: 30.0, 4: 12.0, 8: 10.0},
             "small_b": {2: 9.0, 4: 1.0, 8: 0.5},
             "small_c": {2: 9.0, 4: 1.0, 8: 0.5}}
    chosen = knapsack(costs, sizes, target_bits=4.0)
    best, best_bits = _brute_force(costs, sizes, 4.0)
    assert chosen == best_bits == {"big_a": 4, "small_b": 4, "small_c": 4}
    assert sum(costs[n][b] for n, b in chosen.items()) == best


def test_knapsack_matches_brute_force_on_random_cases():
    generator = torch.Generator().manual_seed(3)
    for case in range(20):
        sizes = {f"l{i}": int(s) for i, s in enumerate(torch.randint(1, 6, (6,), generator=generator))}
        costs = {n: {b: float(torch.rand(1, generator=generator)) * (9 - b) ** 2 for b in (2, 4, 8)}
                 for n in sizes}
        target = 2.5 + case * 0.25
        chosen = knapsack(costs, sizes, target)
        best, _ = _brute_force(costs, sizes, target)
        assert sum(b * sizes[n] for n, b in chosen.items()) <= target * sum(sizes.values()) + 1e-9
        assert sum(costs[n][b] for n, b in chosen.items()) == pytest.approx(best)
    with pytest.raises(ValueError, match="below"):
        knapsack(costs, sizes, 1.5)


@pytest.mark.parametrize("per_channel", [False, True])
def test_batched_candidates_equal_one_at_a_time_values_and_gradients(per_channel):
    from speechmpq.train.quant import fake_quant_candidates_ste

    bits = (2, 4, 8)
    weight = torch.randn(12, 20, generator=torch.Generator().manual_seed(5), requires_grad=True)
    steps = torch.stack([mse_step_size(weight, b, per_channel) for b in bits]).requires_grad_()
    batched = fake_quant_candidates_ste(weight, steps, bits)
    single = torch.stack([fake_quant_ste(weight, steps[i], b) for i, b in enumerate(bits)])
    assert torch.equal(batched, single)
    upstream = torch.randn_like(batched)
    grads_batched = torch.autograd.grad((batched * upstream).sum(), (weight, steps))
    grads_single = torch.autograd.grad((single * upstream).sum(), (weight, steps))
    for a, b in zip(grads_batched, grads_single, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_default_rule_selects_the_searched_linear_kinds_and_keeps_its_saved_text():
    # run configs save the rule's text and a resume compares it, so the text must not change
    assert TRANSFORMER_LINEARS == (r"re:(^|\.)encoder\.layers\.\d+\.(attention\.(q|k|v|out)_proj"
                                   r"|feed_forward\.(intermediate|output)_dense)$")
    model = build_model("tiny", seed=0)
    resolved = resolve_layers(model, {TRANSFORMER_LINEARS: "search"})
    assert {name.rsplit(".", 1)[1] for name in resolved} == set(SEARCHED_LINEAR_KINDS)
    assert len(resolved) == len(SEARCHED_LINEAR_KINDS) * model.config.num_hidden_layers
