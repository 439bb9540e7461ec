"""Two-stage baseline, stage 1 (``kl``): per-layer sensitivity, then an exact knapsack choice.

Sensitivity of layer l at b bits = mean per-frame KL(FP model ‖ model with only layer l quantized
to b bits, MSE-initialised step) over a few dev batches. Then choose one bit width per layer to
minimise the summed sensitivity with the parameter-weighted average bits at most the target.
"""

from __future__ import annotations

import math
from functools import reduce

import numpy as np
import torch

from speechmpq.train.quant import fake_quant_ste, mse_step_size

MAX_DP_CELLS = 50_000_000


def knapsack(costs: dict[str, dict[int, float]], sizes: dict[str, int], target_bits: float) -> dict[str, int]:
    """Bits per layer minimising sum(costs[l][bits]) s.t. sum(bits * sizes[l]) <= target * sum(sizes).

    Exact multiple-choice knapsack by dynamic programming over the budget in units of the greatest
    common divisor of the layer sizes. Raises ValueError if even the narrowest choice is over budget.
    """
    names = list(costs)
    unit = reduce(math.gcd, (int(sizes[n]) for n in names))
    weights = {n: sizes[n] // unit for n in names}
    capacity = int(math.floor(target_bits * sum(sizes[n] for n in names) / unit + 1e-9))
    if min(min(c) for c in costs.values()) * sum(weights.values()) > capacity:
        raise ValueError(f"target {target_bits} bits is below the narrowest candidate")
    if (capacity + 1) * len(names) > MAX_DP_CELLS:
        raise ValueError("layer sizes too irregular for an exact knapsack; use the nas search")
    best = np.full(capacity + 1, np.inf)  # best[c]: min cost with total weight exactly c
    best[0] = 0.0
    choice = np.zeros((len(names), capacity + 1), dtype=np.int16)
    for row, name in enumerate(names):
        options = sorted(costs[name])
        new = np.full(capacity + 1, np.inf)
        for bits in options:
            w = weights[name] * bits
            if w > capacity:
                continue
            shifted = np.full(capacity + 1, np.inf)
            shifted[w:] = best[: capacity + 1 - w] + costs[name][bits]
            better = shifted < new
            new[better] = shifted[better]
            choice[row, better] = bits
        best = new
    end = int(np.argmin(best))
    if not np.isfinite(best[end]):
        raise ValueError(f"no bit assignment fits {target_bits} average bits")
    chosen = {}
    for row in range(len(names) - 1, -1, -1):
        bits = int(choice[row, end])
        chosen[names[row]] = bits
        end -= weights[names[row]] * bits
    return {n: chosen[n] for n in names}


def frame_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor,
             frames: torch.Tensor) -> torch.Tensor:
    """Sum over valid frames of KL(teacher ‖ student); logits (B, T, V), frames (B,) valid lengths."""
    teacher = torch.log_softmax(teacher_logits.float(), dim=-1)
    student = torch.log_softmax(student_logits.float(), dim=-1)
    per_frame = (teacher.exp() * (teacher - student)).sum(-1)  # (B, T)
    valid = torch.arange(per_frame.shape[1], device=frames.device)[None, :] < frames[:, None]
    return (per_frame * valid).sum()


@torch.no_grad()
def kl_sensitivity(model, layers: list[str], candidates: tuple[int, ...], batches: list[dict],
                   per_channel: bool, progress: bool = True,
                   group_size: int | None = None) -> dict[str, dict[int, float]]:
    """layer -> bits -> mean per-frame KL(FP ‖ only that layer quantized), on ``batches``
    (``group_size``: per-group step sizes, as the supernet's)."""
    from tqdm import tqdm

    from speechmpq.train.models import strip_weight_norm

    model.eval()
    device = next(model.parameters()).device
    modules = dict(model.named_modules())
    inputs = []
    for batch in batches:
        values = batch["input_values"].to(device)
        mask = batch["attention_mask"].to(device)
        frames = model._get_feat_extract_output_lengths(mask.sum(-1))
        inputs.append((values, mask, frames, model(values, attention_mask=mask).logits))
    total_frames = float(sum(int(f.sum()) for _, _, f, _ in inputs))
    result: dict[str, dict[int, float]] = {}
    bar = tqdm(total=len(layers) * len(candidates), desc="sensitivity", disable=not progress)
    for name in layers:
        strip_weight_norm(modules[name])
        weight = modules[name].weight
        original = weight.detach().clone()
        result[name] = {}
        for bits in candidates:
            step = mse_step_size(original, bits, per_channel, group_size=group_size)
            weight.copy_(fake_quant_ste(original, step, bits, group_size=group_size))
            kl = sum(float(frame_kl(t, model(v, attention_mask=m).logits, f)) for v, m, f, t in inputs)
            result[name][bits] = kl / total_frames
            bar.update(1)
        weight.copy_(original)
    bar.close()
    return result
