"""The bit plan: the one contract between train, export and runtime (pure Python, no numpy/torch).

A bit plan says, for every quantized weight of a model, how many bits it is stored with and how its
scales are laid out. ``speechmpq quantize`` writes it as ``bitplan.json``; export embeds the same JSON
in the .onnx metadata under ``speechmpq.bitplan``; the runtime reads it back for reports. Nothing
downstream re-derives bit widths from layer names.

Schema (format_version 1; format_version 2 adds "per-group")::

    {
      "format": "speechmpq.bitplan",
      "format_version": 1,
      "method": "one-stage" | "two-stage" | "uniform",
      "candidates": [2, 4, 8],          # bit widths the search could choose from
      "granularity": "per-tensor" | "per-channel" | "per-group",
      "group_size": 32,                 # per-group only: input weights sharing one scale
      "symmetric": true,                # integer grid [-2^(bits-1), 2^(bits-1) - 1], zero point 0
      "target_bits": 3.5 | null,        # average-bits budget (null: uniform)
      "window": [3.3, 3.5] | null,      # the size term is off inside this range
      "budget": "code-bits",            # optional: what target_bits and window count: the codes alone
                                        # (absent: the same) or "stored-bits" (codes + scales per weight)
      "average_bits": 3.47,             # parameter-weighted mean over searched layers
      "searched_parameters": 4718592,
      "layers": {                       # module name (as in model.named_modules()) -> entry
        "wav2vec2.encoder.layers.0.attention.q_proj": {
          "bits": 4, "kind": "linear", "shape": [256, 256], "scale_shape": [256, 1],
          "searched": true
        }, ...
      }
    }

Weights not listed are stored in floating point. Dequantized weight = integer weight * scale, with
the scale broadcast over the weight (``scale_shape`` has the weight's rank).

Per-group (format_version 2; linear layers only): a layer of shape [out, in] has scale_shape
[out, in / group_size], one scale per block of ``group_size`` consecutive input weights of each output
row; dequantized weight = codes * scale repeated ``group_size`` times along the input axis. Plans
without per-group layers are still written as format_version 1, byte for byte as before; readers
accept 1 and 2, and a per-group plan claiming format_version 1 is invalid.

Per-layer group sizes (format_version 3, per-group plans only): a layer entry may carry its own
"group_size" (a search over (bits, block) pairs, e.g. 2 bits in blocks of 32 or 4 bits in blocks of
128); entries without one use the plan's. ``layer_group_size(plan, entry)`` is the one reader.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

FORMAT = "speechmpq.bitplan"
FORMAT_VERSION = 3  # the newest this reads; plans without per-group layers are written as 1
GROUP_FORMAT_VERSION = 2  # the first format_version with "per-group"
LAYER_GROUP_FORMAT_VERSION = 3  # the first with a group_size per layer entry
ROW_GRANULARITIES = ("per-tensor", "per-channel")  # format_version 1: one scale per tensor or row
GRANULARITIES = (*ROW_GRANULARITIES, "per-group")
METHODS = ("one-stage", "two-stage", "uniform")
KINDS = ("linear", "conv1d")
# The linear layers the search chooses bits for, by the last part of their module name: the q, k, v
# and out projections and the two FFN matrices of every transformer block (wav2vec2, HuBERT and
# WavLM name them alike).
SEARCHED_LINEAR_KINDS = ("q_proj", "k_proj", "v_proj", "out_proj", "intermediate_dense", "output_dense")
MIN_BITS, MAX_BITS = 2, 8


class BitPlanError(ValueError):
    """A bit plan that is malformed, from a newer format, or inconsistent with itself."""


def average_bits(layers: dict[str, dict], searched_only: bool = True) -> float:
    """Parameter-weighted mean bit width over the (searched) layers."""
    chosen = [e for e in layers.values() if e.get("searched", True) or not searched_only]
    count = sum(math.prod(e["shape"]) for e in chosen)
    if count == 0:
        return 0.0
    return sum(e["bits"] * math.prod(e["shape"]) for e in chosen) / count


def stored_bits_per_weight(plan: dict, searched_only: bool = True, containers: bool = False) -> float:
    """Bits stored per weight over the (searched) layers: each weight's code (``bits``) plus its share
    of the float32 scales (32 bits each; no zero points, the grid is symmetric). Per layer of
    ``out x in`` weights that is bits + 32 / group_size per group, + 32 / in per channel,
    + 32 / (out * in) per tensor; the plan's figure is the parameter-weighted mean. ``average_bits``
    (the paper's accounting) counts the codes alone. ``containers``: each code in the ONNX integer
    type that holds it (``container_bits``: 3 bits take 4), what an exported file stores."""
    chosen = [e for e in plan["layers"].values() if e.get("searched", True) or not searched_only]
    count = sum(math.prod(e["shape"]) for e in chosen)
    if count == 0:
        return 0.0
    width = container_bits if containers else int
    stored = sum(width(e["bits"]) * math.prod(e["shape"]) + 32 * math.prod(e["scale_shape"]) for e in chosen)
    return stored / count


def make_plan(layers: dict[str, dict], method: str, candidates: list[int], granularity: str,
              target_bits: float | None = None, window: list[float] | None = None,
              group_size: int | None = None) -> dict:
    """A validated plan; ``group_size`` is given for (and only for) per-group plans."""
    searched = [e for e in layers.values() if e.get("searched", True)]
    grouped = granularity == "per-group"
    version = (LAYER_GROUP_FORMAT_VERSION if any("group_size" in e for e in layers.values())
               else GROUP_FORMAT_VERSION if grouped else 1)
    plan = {
        "format": FORMAT, "format_version": version, "method": method,
        "candidates": sorted(int(b) for b in candidates), "granularity": granularity,
        **({"group_size": group_size} if grouped or group_size is not None else {}),
        "symmetric": True, "target_bits": target_bits, "window": window,
        "average_bits": round(average_bits(layers), 6),
        "searched_parameters": sum(math.prod(e["shape"]) for e in searched),
        "layers": {name: dict(entry) for name, entry in layers.items()},
    }  # fmt: skip
    validate(plan)
    return plan


def valid_group_size(group_size: object) -> bool:
    return (isinstance(group_size, int) and not isinstance(group_size, bool) and group_size >= 16
            and group_size & (group_size - 1) == 0)


def _fail(message: str):
    raise BitPlanError(f"bit plan: {message}")


def validate(plan: object) -> dict:
    """Check a parsed bit plan; returns it unchanged or raises BitPlanError naming the problem."""
    if not isinstance(plan, dict):
        _fail("not a JSON object")
    if plan.get("format") != FORMAT:
        _fail(f"format is {plan.get('format')!r}, expected {FORMAT!r}")
    version = plan.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        _fail("format_version missing or not an integer")
    if version > FORMAT_VERSION:
        _fail(f"format_version {version} is newer than this speechmpq understands "
              f"({FORMAT_VERSION}); upgrade speechmpq")
    if plan.get("method") not in METHODS:
        _fail(f"method must be one of {METHODS}, got {plan.get('method')!r}")
    if plan.get("granularity") not in GRANULARITIES:
        _fail(f"granularity must be one of {GRANULARITIES}, got {plan.get('granularity')!r}")
    grouped = plan["granularity"] == "per-group"
    if grouped and version < GROUP_FORMAT_VERSION:
        _fail(f"a per-group plan needs format_version {GROUP_FORMAT_VERSION}, got {version}")
    if grouped and not valid_group_size(plan.get("group_size")):
        _fail(f"group_size must be a power of two >= 16, got {plan.get('group_size')!r}")
    if not grouped and "group_size" in plan:
        _fail(f"group_size is for per-group plans only ({plan['granularity']} plan)")
    candidates = plan.get("candidates")
    if (not isinstance(candidates, list) or not candidates
            or not all(isinstance(b, int) and MIN_BITS <= b <= MAX_BITS for b in candidates)):
        _fail(f"candidates must be a non-empty list of integers in {MIN_BITS}..{MAX_BITS}")
    layers = plan.get("layers")
    if not isinstance(layers, dict) or not layers:
        _fail("layers must be a non-empty object")
    for name, entry in layers.items():
        if not isinstance(entry, dict):
            _fail(f"layer {name!r}: entry is not an object")
        bits = entry.get("bits")
        if not isinstance(bits, int) or isinstance(bits, bool) or not MIN_BITS <= bits <= MAX_BITS:
            _fail(f"layer {name!r}: bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
        if entry.get("searched", True) and bits not in candidates:
            _fail(f"layer {name!r}: searched layer has {bits} bits, not a candidate {candidates}")
        if entry.get("kind") not in KINDS:
            _fail(f"layer {name!r}: kind must be one of {KINDS}, got {entry.get('kind')!r}")
        shape, scale_shape = entry.get("shape"), entry.get("scale_shape")
        for label, dims in (("shape", shape), ("scale_shape", scale_shape)):
            if (not isinstance(dims, list) or not dims
                    or not all(isinstance(d, int) and d >= 1 for d in dims)):
                _fail(f"layer {name!r}: {label} must be a list of positive integers")
        if "group_size" in entry and (not grouped or version < LAYER_GROUP_FORMAT_VERSION
                                      or not valid_group_size(entry["group_size"])):
            _fail(f"layer {name!r}: a group_size per layer needs a per-group plan of format_version "
                  f"{LAYER_GROUP_FORMAT_VERSION} and a power of two >= 16, got {entry['group_size']!r}")
        if grouped:
            _check_group_layer(name, entry, layer_group_size(plan, entry))
            continue
        if len(scale_shape) != len(shape) or any(
                s not in (1, d) for s, d in zip(scale_shape, shape, strict=True)):
            _fail(f"layer {name!r}: scale_shape {scale_shape} does not broadcast over {shape}")
        per_channel = scale_shape[0] == shape[0] and shape[0] > 1
        if plan["granularity"] == "per-tensor" and math.prod(scale_shape) != 1:
            _fail(f"layer {name!r}: per-tensor plan but scale_shape {scale_shape}")
        if plan["granularity"] == "per-channel" and shape[0] > 1 and not per_channel:
            _fail(f"layer {name!r}: per-channel plan but scale_shape {scale_shape}")
    average = plan.get("average_bits")
    if not isinstance(average, int | float) or abs(average - average_bits(layers)) > 1e-4:
        _fail(f"average_bits {average!r} does not match the layers ({average_bits(layers):.6f})")
    return plan


def linear_scale_shape(shape: list[int], granularity: str, group_size: int | None = None) -> list[int]:
    """The scale_shape of an [out, in] linear layer: [1, 1] per tensor, [out, 1] per channel,
    [out, in / group_size] per group (in must be a multiple of group_size)."""
    if granularity == "per-group":
        return [shape[0], shape[1] // group_size]
    return [shape[0], 1] if granularity == "per-channel" else [1, 1]


def layer_group_size(plan: dict, entry: dict) -> int | None:
    """The input weights per scale of one layer: its own group_size, else the plan's (None unless
    per-group)."""
    return entry.get("group_size", plan.get("group_size"))


def _check_group_layer(name: str, entry: dict, group_size: int) -> None:
    """A per-group layer: linear, [out, in] with in a multiple of group_size, scales [out, in / G]."""
    shape, scale_shape = entry["shape"], entry["scale_shape"]
    if entry["kind"] != "linear":
        _fail(f"layer {name!r}: per-group scales are for linear layers only, not {entry['kind']}")
    if len(shape) != 2 or shape[1] % group_size:
        _fail(f"layer {name!r}: per-group needs a 2-D shape [out, in] with in a multiple of "
              f"group_size {group_size}, got {shape}")
    expected = linear_scale_shape(shape, "per-group", group_size)
    if scale_shape != expected:
        _fail(f"layer {name!r}: per-group scale_shape must be {expected}, got {scale_shape}")


def load(path: str | Path) -> dict:
    path = Path(path)
    try:
        return validate(json.loads(path.read_text()))
    except OSError as error:
        raise BitPlanError(f"{path}: cannot read bit plan ({error.strerror or error})") from None
    except json.JSONDecodeError as error:
        raise BitPlanError(f"{path}: bit plan is not valid JSON ({error})") from None


def loads(text: str) -> dict:
    try:
        return validate(json.loads(text))
    except json.JSONDecodeError as error:
        raise BitPlanError(f"bit plan is not valid JSON ({error})") from None


def dumps(plan: dict) -> str:
    return json.dumps(validate(plan), indent=1) + "\n"


def container_bits(bits: int, minimum: int = 2) -> int:
    """The narrowest ONNX integer container for ``bits`` of at least ``minimum`` bits:
    2 -> 2, 3..4 -> 4, 5..8 -> 8."""
    if not 2 <= bits <= 8:
        raise ValueError(f"no ONNX integer container for {bits}-bit weights (2..8 supported)")
    bits = max(bits, minimum)
    return 2 if bits <= 2 else 4 if bits <= 4 else 8


def model_bytes(plan: dict, total_parameters: int, bias_parameters: int,
                others_bits: int = 8) -> float:
    """Model size in bytes: planned layers at their bits, biases in fp32, every other parameter at
    ``others_bits`` (8: the paper's accounting; 32: everything else kept in fp32). Scales are not
    counted (``stored_bits_per_weight`` adds them; export reports the real file size)."""
    quantized = sum(math.prod(e["shape"]) for e in plan["layers"].values())
    planned_bits = sum(e["bits"] * math.prod(e["shape"]) for e in plan["layers"].values())
    others = total_parameters - quantized - bias_parameters
    if others < 0:
        raise BitPlanError("the plan covers more parameters than the model has")
    return (planned_bits + others * others_bits + bias_parameters * 32) / 8
