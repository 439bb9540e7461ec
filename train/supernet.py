"""Mixed-precision supernet: every chosen weight gets one quantizer per candidate bit width.

``prepare_supernet(model, cfg)`` attaches a ``WeightQuantizer`` to the ``weight`` of each selected
``nn.Linear`` / ``nn.Conv1d`` through ``torch.nn.utils.parametrize``, so the module's own forward is
untouched and does ONE matmul with the mixed quantized weight::

    before:  y = x @ W.T + b
    after:   W_mix = sum_i p_i * fake_quant(W, step_i, bits_i)   p = hard Gumbel-softmax (one-hot)
             y = x @ W_mix.T + b

``finalize(model)`` keeps each layer's argmax candidate; ``fix_bits(model, plan)`` fixes given bits
(two-stage stage 2, Pass 2, uniform QAT). The float weight stays the trained parameter throughout.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn
from torch.nn.utils import parametrize

from speechmpq import bitplan
from speechmpq.train.models import strip_weight_norm
from speechmpq.train.quant import fake_quant_candidates_ste, fake_quant_ste, mse_step_size, quantize

# The default layer rule: bitplan.SEARCHED_LINEAR_KINDS of every transformer block, as one pattern.
# Run configs save its text and a resume compares it, so the text must not change (a test pins it).
_ATTENTION = "|".join(k.removesuffix("_proj") for k in bitplan.SEARCHED_LINEAR_KINDS if k.endswith("_proj"))
_FFN = "|".join(k.removesuffix("_dense") for k in bitplan.SEARCHED_LINEAR_KINDS if k.endswith("_dense"))
TRANSFORMER_LINEARS = (rf"re:(^|\.)encoder\.layers\.\d+\.(attention\.({_ATTENTION})_proj"
                       rf"|feed_forward\.({_FFN})_dense)$")


@dataclass
class SupernetConfig:
    candidates: tuple[int, ...] = (2, 4, 8)  # bit widths to choose from (any subset of 2..8)
    granularity: str = "per-tensor"  # per-tensor (paper), per-channel or per-group step sizes
    # per-group only: input weights of a row sharing one step size (a power of two >= 16; every
    # selected layer must be an nn.Linear whose in_features it divides)
    group_size: int | None = None
    # per-group only: one group size per candidate, in the order given ((bits, block) pairs, e.g.
    # candidates (2, 4, 8) with group_sizes (32, 128, 128)); group_size is then their smallest
    group_sizes: tuple[int, ...] | None = None
    learn_steps: bool = True  # step sizes trainable (LSQ) after their MSE initialisation
    logit_init: tuple[float, ...] | None = None  # per candidate; None: 0 ... 0, 0.02 on the widest
    # Ordered map, first match wins: exact module name or "re:<pattern>" -> "search", "fp" or a
    # fixed bit width. Linear and Conv1d modules not matched stay in floating point.
    layers: dict = field(default_factory=lambda: {TRANSFORMER_LINEARS: "search"})

    def __post_init__(self):
        if self.group_sizes is not None:
            if len(self.group_sizes) != len(self.candidates):
                raise ValueError("group_sizes needs one group size per candidate")
            if not all(bitplan.valid_group_size(g) for g in self.group_sizes):
                raise ValueError(f"group_sizes must be powers of two >= 16, got {self.group_sizes}")
            if self.granularity != "per-group":
                raise ValueError("group_sizes is for per-group only")
            pairs = sorted(zip((int(b) for b in self.candidates), self.group_sizes, strict=True))
            self.candidates, self.group_sizes = tuple(b for b, _ in pairs), tuple(g for _, g in pairs)
            if self.group_size not in (None, min(self.group_sizes)):
                raise ValueError("with group_sizes, group_size is their smallest (or left out)")
            self.group_size = min(self.group_sizes)
        self.candidates = tuple(sorted(int(b) for b in self.candidates))
        if not self.candidates or len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"candidates must be distinct bit widths, got {self.candidates}")
        if not all(2 <= b <= 8 for b in self.candidates):
            raise ValueError(f"candidate bit widths must be in 2..8, got {self.candidates}")
        if self.granularity not in bitplan.GRANULARITIES:
            raise ValueError(f"granularity must be one of {bitplan.GRANULARITIES}, got {self.granularity!r}")
        if self.granularity == "per-group" and not bitplan.valid_group_size(self.group_size):
            raise ValueError(f"per-group needs group_size, a power of two >= 16, got {self.group_size!r}")
        if self.granularity != "per-group" and self.group_size is not None:
            raise ValueError(f"group_size is for per-group only, not {self.granularity}")
        if self.logit_init is None:
            self.logit_init = tuple([0.0] * (len(self.candidates) - 1) + [0.02])
        self.logit_init = tuple(float(x) for x in self.logit_init)
        if len(self.logit_init) != len(self.candidates):
            raise ValueError("logit_init needs one value per candidate")
        if not self.layers:
            raise ValueError("layers must select at least one layer")
        for key, value in self.layers.items():
            if key.startswith("re:"):
                try:
                    re.compile(key[3:])
                except re.error as error:
                    raise ValueError(f"layers: bad pattern {key!r} ({error})") from None
            if not (value in ("search", "fp") or (isinstance(value, int) and 2 <= value <= 8)):
                raise ValueError(f"layers[{key!r}] must be 'search', 'fp' or bits in 2..8, got {value!r}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["candidates"], data["logit_init"] = list(self.candidates), list(self.logit_init)
        if self.group_size is None:  # run configs from before per-group compare equal on resume
            del data["group_size"]
        if self.group_sizes is None:
            del data["group_sizes"]
        else:
            data["group_sizes"] = list(self.group_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SupernetConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown SupernetConfig fields: {sorted(unknown)}")
        if data.get("group_sizes") is not None:
            data = {**data, "group_sizes": tuple(data["group_sizes"])}
        return cls(**data)

    def group_size_of(self, bits: int) -> int | None:
        """The group size a layer at ``bits`` uses (its pair's, where pairs are given)."""
        if self.group_sizes is not None and bits in self.candidates:
            return self.group_sizes[self.candidates.index(bits)]
        return self.group_size


class WeightQuantizer(nn.Module):
    """Parametrization W -> mixed fake-quantized W over ``candidates`` (one step size each)."""

    def __init__(self, weight: torch.Tensor, candidates: tuple[int, ...], per_channel: bool,
                 learn_steps: bool, logit_init: tuple[float, ...] | None, searched: bool,
                 group_size: int | None = None, group_sizes: tuple[int, ...] | None = None):
        super().__init__()
        self.candidates = tuple(candidates)
        self.per_channel = per_channel
        self.group_size = group_size  # per group: steps (n, out, in / G)
        # (bits, block) pairs: candidate i quantizes in blocks of group_sizes[i]; its steps are kept at
        # the finest group size G and averaged over each of its blocks (effective_steps), so steps
        # stays one (n, out, in / G) tensor
        self.group_sizes = tuple(group_sizes) if group_sizes is not None else None
        self.layer_group_sizes = self.group_sizes is not None  # the plan records each layer's
        self.searched = searched
        self.weight_numel = weight.numel()
        sizes = self.group_sizes or (group_size,) * len(self.candidates)
        steps = torch.stack([_repeat_blocks(mse_step_size(weight, bits, per_channel, group_size=size),
                                            size, group_size)
                             for bits, size in zip(self.candidates, sizes, strict=True)])
        self.steps = nn.Parameter(steps, requires_grad=learn_steps)  # (n, out or 1, 1, ...) or (n, out, in/G)
        self.logits = (nn.Parameter(torch.tensor(logit_init, dtype=torch.float32))
                       if len(self.candidates) > 1 else None)
        self.tau = 1.0
        self.noise: torch.Tensor | None = None  # Gumbel noise for the next training forward

    def probabilities(self) -> torch.Tensor:
        """(n,) one-hot in the forward pass; in training, Gumbel-softmax gradients backward."""
        if self.logits is None:
            return torch.ones(1, device=self.steps.device)
        if not self.training:
            return nn.functional.one_hot(self.logits.argmax(), len(self.candidates)).float()
        scores = self.logits if self.noise is None else self.logits + self.noise
        soft = torch.softmax(scores / self.tau, dim=0)
        hard = nn.functional.one_hot(soft.argmax(), len(self.candidates)).to(soft.dtype)
        # Exactly one-hot forward (hard + 0), soft gradient backward.
        return hard + (soft - soft.detach())

    def effective_steps(self) -> torch.Tensor:
        """(n, *scale_shape): each candidate's steps, constant over each of its blocks."""
        if self.group_sizes is None:
            return self.steps
        return torch.stack([_repeat_blocks(_block_means(self.steps[i], size, self.group_size), size,
                                           self.group_size)
                            for i, size in enumerate(self.group_sizes)])

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.logits is None:
            return fake_quant_ste(weight, self.effective_steps()[0], self.candidates[0],
                                  group_size=self.group_size)
        probs = self.probabilities().view((-1,) + (1,) * weight.dim())
        # (n, *W.shape): every candidate's quantized weight; the one-hot mix picks one exactly.
        candidates = fake_quant_candidates_ste(weight, self.effective_steps(), self.candidates,
                                               group_size=self.group_size)
        return (probs * candidates).sum(0)

    def chosen_index(self) -> int:
        return 0 if self.logits is None else int(self.logits.argmax())

    def scale_bits(self) -> list[float]:
        """Per candidate: bits of float32 scales stored per weight (32 / G per group of G)."""
        if self.group_sizes is not None:
            return [32.0 / size for size in self.group_sizes]
        return [32.0 * self.steps[0].numel() / self.weight_numel] * len(self.candidates)

    def expected_bits(self, stored: bool = False) -> torch.Tensor:
        """E[bits] under softmax(logits): differentiable, for the size term (``stored``: plus each
        candidate's scales per weight)."""
        values = [b + (s if stored else 0.0) for b, s in zip(self.candidates, self.scale_bits(), strict=True)]
        bits = torch.tensor(values, dtype=torch.float32, device=self.steps.device)
        if self.logits is None:
            return bits[0]
        return (torch.softmax(self.logits, dim=0) * bits).sum()

    def hard_bits(self, stored: bool = False) -> float:
        index = self.chosen_index()
        return self.candidates[index] + (self.scale_bits()[index] if stored else 0.0)


def _block_means(steps: torch.Tensor, size: int, finest: int) -> torch.Tensor:
    """(out, in / finest) steps -> (out, in / size): the mean over each block of ``size``."""
    if size == finest:
        return steps
    return steps.unflatten(-1, (-1, size // finest)).mean(-1)


def _repeat_blocks(steps: torch.Tensor, size: int | None, finest: int | None) -> torch.Tensor:
    """(out, in / size) steps -> (out, in / finest), each repeated over the finer blocks it covers."""
    if size is None or size == finest:
        return steps
    return steps.repeat_interleave(size // finest, dim=-1)


def quantizers(model: nn.Module) -> dict[str, WeightQuantizer]:
    """Module name -> its WeightQuantizer, in model order."""
    found = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            for p in module.parametrizations.weight:
                if isinstance(p, WeightQuantizer):
                    found[name] = p
    return found


def float_weight(module: nn.Module) -> torch.Tensor:
    return module.parametrizations.weight.original


def resolve_layers(model: nn.Module, layers: dict) -> dict[str, str | int]:
    """Module name -> "search" or bits, for every Linear/Conv1d a rule selects (first match wins).

    Raises ValueError for an exact name that is not such a module or a pattern matching none.
    """
    candidates = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv1d)}
    used = {key: False for key in layers}
    resolved = {}
    for name in candidates:
        for key, value in layers.items():
            hit = re.search(key[3:], name) if key.startswith("re:") else key == name
            if hit:
                used[key] = True
                if value != "fp":
                    resolved[name] = value
                break
    unused = [key for key, hit in used.items() if not hit]
    if unused:
        raise ValueError(f"layers: {unused} match no Linear/Conv1d module of this model")
    if not resolved:
        raise ValueError("layers: no module selected for quantization")
    return resolved


def prepare_supernet(model: nn.Module, cfg: SupernetConfig) -> dict[str, str | int]:
    """Attach quantizers in place; returns the resolved layer map (name -> "search" or bits)."""
    resolved = resolve_layers(model, cfg.layers)
    modules = dict(model.named_modules())
    for name, setting in resolved.items():
        module = modules[name]
        strip_weight_norm(module)  # the positional conv: quantize its effective weight
        searched = setting == "search"
        candidates = cfg.candidates if searched else (int(setting),)
        largest = max(cfg.group_sizes or (cfg.group_size or 1,))
        if cfg.group_size is not None and not (isinstance(module, nn.Linear)
                                               and module.in_features % largest == 0):
            raise ValueError(f"{name}: per-group step sizes need an nn.Linear whose in_features is a "
                             f"multiple of group_size {largest}")
        if cfg.group_sizes is not None and searched:
            group_size, group_sizes = cfg.group_size, cfg.group_sizes
        else:  # a fixed width keeps its pair's block (or the plan's)
            group_size = cfg.group_size_of(candidates[0]) if cfg.group_sizes else cfg.group_size
            group_sizes = None
        quantizer = WeightQuantizer(module.weight.detach(), candidates,
                                    cfg.granularity == "per-channel", cfg.learn_steps,
                                    cfg.logit_init if searched else None, searched, group_size, group_sizes)
        quantizer.layer_group_sizes = cfg.group_sizes is not None
        parametrize.register_parametrization(module, "weight", quantizer.to(module.weight.device),
                                             unsafe=True)
    return resolved


def _reduce_to(quantizer: WeightQuantizer, index: int) -> WeightQuantizer:
    """Same quantizer with one candidate left (its step size kept)."""
    quantizer.candidates = (quantizer.candidates[index],)
    steps = quantizer.steps.data[index: index + 1].clone()
    if quantizer.group_sizes is not None:  # keep the chosen pair's steps at its own block size
        size = quantizer.group_sizes[index]
        steps = _block_means(steps[0], size, quantizer.group_size)[None].clone()
        quantizer.group_size, quantizer.group_sizes = size, None
    quantizer.steps = nn.Parameter(steps, requires_grad=quantizer.steps.requires_grad)
    quantizer.logits = None
    quantizer.noise = None
    return quantizer


def current_bits(model: nn.Module) -> dict[str, int]:
    """Each layer's bits now: its argmax candidate (searched) or its fixed width."""
    return {name: q.candidates[q.chosen_index()] for name, q in quantizers(model).items()}


def fix_bits(model: nn.Module, bits: dict[str, int]) -> None:
    """Fix every quantizer to the given bits (must be one of its candidates)."""
    table = quantizers(model)
    missing = set(table) - set(bits)
    if missing:
        raise ValueError(f"no bits given for {sorted(missing)[:3]}...")
    for name, quantizer in table.items():
        if bits[name] not in quantizer.candidates:
            raise ValueError(f"{name}: {bits[name]} bits is not among {quantizer.candidates}")
        _reduce_to(quantizer, quantizer.candidates.index(bits[name]))


def finalize(model: nn.Module) -> dict[str, int]:
    """Each searched layer keeps its argmax candidate; returns name -> bits."""
    bits = current_bits(model)
    fix_bits(model, bits)
    return bits


def set_temperature(model: nn.Module, tau: float) -> None:
    for quantizer in quantizers(model).values():
        quantizer.tau = tau


def draw_gumbel_noise(model: nn.Module, generator: torch.Generator) -> None:
    """Fresh Gumbel noise for every searched layer, from ``generator`` (the same on every rank)."""
    for quantizer in quantizers(model).values():
        if quantizer.logits is not None:
            uniform = torch.rand(len(quantizer.candidates), generator=generator).clamp(1e-10, 1 - 1e-7)
            quantizer.noise = (-torch.log(-torch.log(uniform))).to(quantizer.logits.device)


def tau_at(step: int, total: int, start: float = 0.5, end: float = 0.01) -> float:
    """Cosine annealing from ``start`` (step 0) to ``end`` (last step)."""
    progress = min(1.0, step / max(1, total - 1))
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def bits_summary(model: nn.Module, stored: bool = False) -> dict:
    """Expected (differentiable) and hard average bits over searched layers, parameter-weighted.
    ``stored``: each weight's share of its float32 scales added (bitplan.stored_bits_per_weight)."""
    table = {n: q for n, q in quantizers(model).items() if q.searched}
    if not table:
        return {"expected": None, "hard": None}
    sizes = {n: q.weight_numel for n, q in table.items()}
    total = sum(sizes.values())
    expected = sum(q.expected_bits(stored) * sizes[n] for n, q in table.items()) / total
    hard = sum(q.hard_bits(stored) * sizes[n] for n, q in table.items()) / total
    return {"expected": expected, "hard": hard}


def plan_layers(model: nn.Module) -> dict[str, dict]:
    """Bit-plan layer entries (see speechmpq.bitplan) for the model's current bits."""
    modules = dict(model.named_modules())
    entries = {}
    for name, quantizer in quantizers(model).items():
        weight = float_weight(modules[name])
        index = quantizer.chosen_index()
        if quantizer.group_sizes is not None:  # still searching: the chosen pair's block
            size = quantizer.group_sizes[index]
            scale_shape = bitplan.linear_scale_shape(list(weight.shape), "per-group", size)
        else:
            scale_shape, size = list(quantizer.steps.shape[1:]), quantizer.group_size
        entries[name] = {"bits": quantizer.candidates[index],
                         "kind": "linear" if isinstance(modules[name], nn.Linear) else "conv1d",
                         "shape": list(weight.shape), "scale_shape": scale_shape,
                         "searched": quantizer.searched}
        if quantizer.layer_group_sizes:
            entries[name]["group_size"] = size
    return entries


@torch.no_grad()
def integer_weights(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor, int]]:
    """name -> (int8 codes, float32 scale in the plan's scale_shape, bits), for fixed layers: the
    scale broadcasts over the weight, or per group is (out, in / G)."""
    modules = dict(model.named_modules())
    out = {}
    for name, quantizer in quantizers(model).items():
        if quantizer.logits is not None:
            raise ValueError(f"{name} still has {len(quantizer.candidates)} candidates; finalize first")
        step = quantizer.steps[0].detach().float()
        codes = quantize(float_weight(modules[name]).detach().float(), step, quantizer.candidates[0],
                         quantizer.group_size)
        out[name] = (codes.cpu(), step.cpu(), quantizer.candidates[0])
    return out


def layer_table(resolved: dict[str, str | int]) -> str:
    """The resolved layer map as a small text table (printed once at the start of a run)."""
    lines = [f"{'layer':<60} setting"]
    lines += [f"{name:<60} {setting}" for name, setting in resolved.items()]
    return "\n".join(lines)
