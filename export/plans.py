"""Bit plans applied at export time: a given plan on a float model (round-to-nearest with MSE step
sizes), a plan's per-matrix-type pattern repeated over a deeper model, and the int8 "others"."""

from __future__ import annotations

import re

import numpy as np
import torch

from speechmpq import bitplan as bitplan_lib
from speechmpq.bitplan import SEARCHED_LINEAR_KINDS
from speechmpq.errors import SpeechmpqError
from speechmpq.export.qdq import QuantizedWeight
from speechmpq.train.models import strip_weight_norm
from speechmpq.train.quant import dequantize, mse_step_size, quantize

_LAYER = re.compile(r"(^|\.)encoder\.layers\.(\d+)\.(.+)$")


def _module_weight(module) -> torch.Tensor:
    strip_weight_norm(module)
    return module.weight.detach().float()


def rtn_weights(model, plan: dict) -> list[QuantizedWeight]:
    """Quantize ``model``'s planned weights (round to nearest, MSE step per tensor, channel or group),
    set the model's float weights to codes x scale, and return them as QuantizedWeight."""
    modules = dict(model.named_modules())
    weights = []
    for name, entry in plan["layers"].items():
        group_size = bitplan_lib.layer_group_size(plan, entry)  # per-group plans only
        module = modules.get(name)
        if module is None or not hasattr(module, "weight"):
            raise SpeechmpqError(f"bit plan layer {name} is not in the model")
        weight = _module_weight(module)
        if list(weight.shape) != entry["shape"]:
            raise SpeechmpqError(f"bit plan layer {name}: shape {entry['shape']}, model has "
                                 f"{list(weight.shape)}")
        per_channel = entry["scale_shape"][0] != 1
        step = mse_step_size(weight, entry["bits"], per_channel, group_size=group_size)
        codes = quantize(weight, step, entry["bits"], group_size)
        with torch.no_grad():
            module.weight.copy_(dequantize(codes, step, group_size))
        weights.append(QuantizedWeight(name, entry["bits"], codes.numpy(), step.numpy().astype(np.float32),
                                       entry["kind"], entry.get("searched", True), group_size))
    return weights


def other_int8_weights(model, planned: set[str]) -> list[QuantizedWeight]:
    """int8 per-output-channel weights (MSE steps) for every nn.Linear and nn.Conv1d outside the plan;
    the model's float weights are set to codes x scales too, so PyTorch and the graph agree."""
    weights = []
    for name, module in model.named_modules():
        kind = ("linear" if isinstance(module, torch.nn.Linear) else
                "conv1d" if isinstance(module, torch.nn.Conv1d) else None)
        if kind is None or name in planned:
            continue
        weight = _module_weight(module)
        step = mse_step_size(weight, 8, per_channel=True)
        codes = quantize(weight, step, 8)
        with torch.no_grad():
            module.weight.copy_(codes.float() * step)
        weights.append(QuantizedWeight(name, 8, codes.numpy(), step.numpy(), kind, False))
    return weights


def pattern_plan(model, reference: dict) -> dict:
    """``reference``'s bits per matrix type, layer i of an L-layer model taking the reference's layer
    floor(i * L_ref / L): the same average bits whenever L is a multiple of L_ref."""
    by_type: dict[str, dict[int, int]] = {}
    for name, entry in reference["layers"].items():
        match = _LAYER.search(name)
        if match and entry.get("searched", True):
            by_type.setdefault(match.group(3), {})[int(match.group(2))] = entry["bits"]
    if not by_type:
        raise SpeechmpqError("the reference plan has no encoder.layers.N.* entries to repeat")
    layers = {}
    for name, module in model.named_modules():
        match = _LAYER.search(name)
        if not (match and isinstance(module, torch.nn.Linear) and match.group(3) in by_type):
            continue
        if not name.endswith(SEARCHED_LINEAR_KINDS):
            continue
        source = by_type[match.group(3)]
        depth = model.config.num_hidden_layers
        reference_layer = sorted(source)[int(match.group(2)) * len(source) // depth]
        shape = list(module.weight.shape)
        layers[name] = {"bits": source[reference_layer], "kind": "linear", "shape": shape,
                        "scale_shape": _scale_shape(shape, reference), "searched": True}
    return bitplan_lib.make_plan(layers, reference["method"], reference["candidates"],
                                 reference["granularity"], reference.get("target_bits"),
                                 reference.get("window"), reference.get("group_size"))


def _scale_shape(shape: list[int], reference: dict) -> list[int]:
    """A linear layer's scale_shape under ``reference``'s granularity."""
    if reference["granularity"] == "per-group" and shape[1] % reference["group_size"]:
        raise SpeechmpqError(f"the reference plan's group_size {reference['group_size']} does not "
                             f"divide this model's input size {shape[1]}")
    return bitplan_lib.linear_scale_shape(shape, reference["granularity"], reference.get("group_size"))
