"""Weight quantization math: small pure functions, used by the supernet and the baselines.

Symmetric uniform quantizer with a signed grid [-2^(bits-1), 2^(bits-1) - 1] and zero point 0.
``step`` (the scale) is a tensor that broadcasts over the weight: shape (1,)*rank per tensor, or
(out, 1, ...) per output channel. Per group (``group_size`` G given; 2-D weights (out, in), in a
multiple of G): step has shape (out, in / G), one value per block of G consecutive input weights of
a row; the functions view the weight as (out, in / G, G) and the step as (out, in / G, 1), so
weight[o, i] uses step[o, i // G] (the step repeated G times along the input axis).
"""

from __future__ import annotations

import torch


def qrange(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def grouped(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """(..., in) -> (..., in / G, G): the view the per-group functions compute on."""
    if weight.shape[-1] % group_size:
        raise ValueError(f"input size {weight.shape[-1]} is not a multiple of group_size {group_size}")
    return weight.unflatten(-1, (weight.shape[-1] // group_size, group_size))


def quantize(weight: torch.Tensor, step: torch.Tensor, bits: int,
             group_size: int | None = None) -> torch.Tensor:
    """Integer codes (int8 tensor, weight's shape) of ``weight`` on the grid of ``bits``."""
    if group_size is not None:
        return quantize(grouped(weight, group_size), step.unsqueeze(-1), bits).flatten(-2)
    low, high = qrange(bits)
    return torch.clamp(torch.round(weight / step), low, high).to(torch.int8)


def dequantize(codes: torch.Tensor, step: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    if group_size is not None:
        return dequantize(grouped(codes, group_size), step.unsqueeze(-1)).flatten(-2)
    return codes.to(step.dtype) * step


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    # x + (round(x) - x) is exactly round(x) in floating point (Sterbenz: |x - round(x)| <= 0.5).
    return x + (torch.round(x) - x).detach()


class _GradScale(torch.autograd.Function):
    """Identity forward (bit for bit); gradient multiplied by ``factor`` (LSQ's step gradient scale)."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


def fake_quant_ste(weight: torch.Tensor, step: torch.Tensor, bits: int,
                   lsq_grad_scale: bool = True, group_size: int | None = None) -> torch.Tensor:
    """Quantize-dequantize with straight-through rounding; gradients reach ``weight`` (inside the
    clipping range) and ``step`` (LSQ). The forward value equals ``dequantize(quantize(...))``
    bit for bit (with the same ``group_size``)."""
    if group_size is not None:
        return fake_quant_ste(grouped(weight, group_size), step.unsqueeze(-1), bits,
                              lsq_grad_scale).flatten(-2)
    low, high = qrange(bits)
    if lsq_grad_scale and step.requires_grad:
        per_step = weight.numel() // max(step.numel(), 1)
        step = _GradScale.apply(step, 1.0 / (per_step * high) ** 0.5)
    codes = torch.clamp(_round_ste(weight / step), low, high)
    return codes * step


def fake_quant_candidates_ste(weight: torch.Tensor, steps: torch.Tensor, bits: tuple[int, ...],
                              lsq_grad_scale: bool = True, group_size: int | None = None) -> torch.Tensor:
    """``fake_quant_ste`` for several bit widths at once: steps (n, *scale_shape) -> (n, *weight.shape).

    Slice i equals ``fake_quant_ste(weight, steps[i], bits[i], group_size=group_size)`` bit for bit;
    one batched kernel per operation instead of n, which keeps a supernet step close to a plain QAT
    step. Per group: weight (out, in), steps (n, out, in / G) -> (n, out, in).
    """
    if group_size is not None:
        return fake_quant_candidates_ste(grouped(weight, group_size), steps.unsqueeze(-1), bits,
                                         lsq_grad_scale).flatten(-2)
    view = (len(bits),) + (1,) * weight.dim()
    low = torch.tensor([qrange(b)[0] for b in bits], dtype=weight.dtype, device=weight.device).view(view)
    high = torch.tensor([qrange(b)[1] for b in bits], dtype=weight.dtype, device=weight.device).view(view)
    if lsq_grad_scale and steps.requires_grad:
        per_step = weight.numel() // max(steps[0].numel(), 1)
        steps = _GradScale.apply(steps, 1.0 / (per_step * high) ** 0.5)
    codes = torch.clamp(_round_ste(weight.unsqueeze(0) / steps), low, high)
    return codes * steps


def reduce_dims(weight: torch.Tensor, per_channel: bool) -> tuple[int, ...]:
    return tuple(range(1, weight.dim())) if per_channel else tuple(range(weight.dim()))


@torch.no_grad()
def mse_step_size(weight: torch.Tensor, bits: int, per_channel: bool, iterations: int = 40,
                  group_size: int | None = None) -> torch.Tensor:
    """Step size minimising ||dequantize(quantize(w)) - w||^2, by golden-section search over the
    clipping range (each output channel on its own when ``per_channel``, each block of ``group_size``
    input weights of a row on its own when ``group_size`` is given).

    Returns a tensor of shape (out, 1, ...) per channel, (1,)*rank per tensor, or (out, in / G) per
    group.
    """
    if group_size is not None:
        return _mse_step(grouped(weight.detach().float(), group_size), bits, (-1,), iterations).squeeze(-1)
    return _mse_step(weight.detach().float(), bits, reduce_dims(weight, per_channel), iterations)


def _mse_step(weight: torch.Tensor, bits: int, dims: tuple[int, ...], iterations: int) -> torch.Tensor:
    """The golden-section search of ``mse_step_size``, one step per slice over ``dims`` (kept as 1)."""
    _, high = qrange(bits)
    max_abs = weight.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12)

    def error(step):
        codes = torch.clamp(torch.round(weight / step), *qrange(bits))
        return ((codes * step - weight) ** 2).sum(dim=dims, keepdim=True)

    # Search the step over (max|w| / high) * [0.01, 1]: from heavy clipping to none.
    lower, upper = max_abs / high * 0.01, max_abs / high
    ratio = (5 ** 0.5 - 1) / 2
    a, b = upper - ratio * (upper - lower), lower + ratio * (upper - lower)
    error_a, error_b = error(a), error(b)
    for _ in range(iterations):
        left = error_a < error_b  # minimum lies in [lower, b]
        upper = torch.where(left, b, upper)
        lower = torch.where(left, lower, a)
        new_a, new_b = upper - ratio * (upper - lower), lower + ratio * (upper - lower)
        a, b = new_a, new_b
        error_a, error_b = error(a), error(b)
    best = (lower + upper) / 2
    # Golden-section assumes one minimum; keep "no clipping" if it is better.
    return torch.where(error(best) <= error(max_abs / high), best, max_abs / high)
