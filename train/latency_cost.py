"""``quantize --cost latency``: a size term that pays for what runs, from a kernel table.

Each searched linear layer of shape (K, N) has, per candidate bit width b, the latency of the
fastest kernel that stores b bits (``export/kernel_map.py``: the same choice export makes, at the
accuracy level the table favours; the int8-dynamic kernels are left out for 8-bit candidates when
the table's CPU lacks VNNI, since full-range 8-bit codes saturate there). The term is the expected
latency under the bit-choice softmax, as a fraction of the same layers in fp32:

    E[latency ratio] = sum_layers sum_i p_i t(layer, b_i) / sum_layers t_fp32(layer)

It pushes down while the hard (argmax) ratio is above ``latency_budget`` and is off below it. With
``cost="both"`` the average-bits window term is added as well, so a plan meets both budgets.
"""

from __future__ import annotations

from pathlib import Path

import torch

from speechmpq.errors import SpeechmpqError


def layer_latencies(model, table_path: Path) -> dict[str, dict]:
    """name -> {"fp32": ms, "by_bits": {b: ms}} for every searched linear quantizer of ``model``."""
    from speechmpq.bitplan import container_bits
    from speechmpq.kernel_table import (
        INT8_DYNAMIC,
        VNNI_ISA,
        levels_of,
        load_table,
        parse_kernel,
        rules_from_table,
    )
    from speechmpq.train import supernet as sn

    table = load_table(table_path)
    level = rules_from_table(table)["accuracy_level"]
    vnni = any(flag in table["machine"].get("isa", []) for flag in VNNI_ISA)
    shapes = {(s["k"], s["n"]): s["kernels"] for s in table["linear"]}
    modules = dict(model.named_modules())
    out = {}
    for name, quantizer in sn.quantizers(model).items():
        if not quantizer.searched:
            continue
        weight = sn.float_weight(modules[name])
        if weight.dim() != 2:
            raise SpeechmpqError(f"--cost latency covers linear layers; {name} is not one")
        key = (int(weight.shape[1]), int(weight.shape[0]))
        if key not in shapes:
            raise SpeechmpqError(f"{table_path}: no kernel timings for {name}'s shape {key[0]} x {key[1]}; "
                                 f"run speechmpq kernels for this model's preset")
        entries = [e for e in shapes[key] if level in levels_of(e)]
        by_bits = {}
        for bits in quantizer.candidates:
            stored = container_bits(bits)
            times = [e["median_ms"] for e in entries if parse_kernel(e["kernel"])[1] == stored
                     and (vnni or stored != 8 or parse_kernel(e["kernel"])[0] != INT8_DYNAMIC)]
            if not times:
                raise SpeechmpqError(f"{table_path}: no kernel storing {stored} bits for shape {key}")
            by_bits[bits] = min(times)
        out[name] = {
            "fp32": next(e["median_ms"] for e in entries if e["kernel"] == "fp32"),
            "by_bits": by_bits,
        }
    if not out:
        raise SpeechmpqError("--cost latency: the model has no searched layers")
    return out


def latency_summary(model, latencies: dict[str, dict]) -> dict:
    """Expected (differentiable) and hard latency of the searched layers over their fp32 latency."""
    from speechmpq.train import supernet as sn

    quantizers = sn.quantizers(model)
    fp32 = sum(entry["fp32"] for entry in latencies.values())
    expected, hard = 0.0, 0.0
    for name, entry in latencies.items():
        q = quantizers[name]
        times = torch.tensor(
            [entry["by_bits"][b] for b in q.candidates], dtype=torch.float32, device=q.steps.device
        )
        probabilities = torch.softmax(q.logits, dim=0) if q.logits is not None else torch.ones_like(times)
        expected = expected + (probabilities * times).sum()
        hard += float(times[q.chosen_index()])
    return {"expected": expected / fp32, "hard": hard / fp32}


def latency_term(summary: dict, budget: float, weight: float) -> tuple[torch.Tensor | float, str]:
    """weight * 8 * E[ratio] while the hard ratio is above the budget (8: one unit of ratio weighs
    like 8 average bits, the range of the bits term); 0 otherwise."""
    if summary["hard"] > budget + 1e-9:
        return weight * 8.0 * summary["expected"], "down"
    return 0.0, "off"
