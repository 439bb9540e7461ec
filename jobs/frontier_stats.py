"""Plans for the frontier's round-to-nearest rows, and the figures that show whether a search searched.

``search_stats`` compares a quantized model with round-to-nearest of its FP32 weights at the same
bits and granularity (MSE step sizes, as at the start of every quantize run):

    bit_histogram          share of the searched weights at each bit width (and layers at each)
    step_movement          |learned step / MSE initial step - 1|: median and max over every step
    codes_differ_from_rtn  share of integer codes that differ from that round-to-nearest
    equals_rtn             True when the codes differ in under 1 % and the median step moved under 1 %:
                           the run is round-to-nearest of its plan, and every table calls it so
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

EQUALS_RTN_BELOW = 0.01


def uniform_plan(model_dir: Path, bits: int, granularity: str, group_size: int | None = None) -> dict:
    """Every searched linear layer (bitplan.SEARCHED_LINEAR_KINDS) of the model at ``bits``."""
    from speechmpq import bitplan
    from speechmpq.train import TRANSFORMER_LINEARS, load_model
    from speechmpq.train.supernet import resolve_layers

    model = load_model(model_dir)
    modules = dict(model.named_modules())
    layers = {}
    for name in resolve_layers(model, {TRANSFORMER_LINEARS: "search"}):
        shape = list(modules[name].weight.shape)
        layers[name] = {"bits": bits, "kind": "linear", "shape": shape,
                        "scale_shape": bitplan.linear_scale_shape(shape, granularity, group_size),
                        "searched": True}
    return bitplan.make_plan(layers, "uniform", [bits], granularity, group_size=group_size)


def search_stats(fp32_dir: Path, quantized_dir: Path) -> dict:
    import torch

    from speechmpq import bitplan
    from speechmpq.train import load_model, read_quantized
    from speechmpq.train.quant import mse_step_size, quantize

    quantized = read_quantized(quantized_dir)
    plan = quantized.plan
    fp32 = dict(load_model(fp32_dir).named_modules())
    weights_at: Counter = Counter()
    layers_at: Counter = Counter()
    movements, differing, total = [], 0, 0
    for name, entry in plan["layers"].items():
        if not entry.get("searched", True):
            continue
        bits, group_size = entry["bits"], bitplan.layer_group_size(plan, entry)
        weight = fp32[name].weight.detach().float()
        per_channel = entry["scale_shape"][0] != 1 and group_size is None
        initial = mse_step_size(weight, bits, per_channel, group_size=group_size)
        scales = torch.from_numpy(quantized.scales[name]).float().reshape(initial.shape)
        movements.append((scales / initial - 1).abs().flatten())
        codes = torch.from_numpy(quantized.codes[name]).to(torch.int8)
        differing += int((codes != quantize(weight, initial, bits, group_size)).sum())
        total += codes.numel()
        weights_at[bits] += codes.numel()
        layers_at[bits] += 1
    moved = torch.cat(movements)
    median, largest = float(moved.median()), float(moved.max())
    share = differing / total
    return {"bit_histogram": {str(b): weights_at[b] / total for b in sorted(weights_at)},
            "layers_at_bits": {str(b): layers_at[b] for b in sorted(layers_at)},
            "step_movement": {"median": median, "max": largest},
            "codes_differ_from_rtn": share,
            "equals_rtn": share < EQUALS_RTN_BELOW and median < EQUALS_RTN_BELOW}
