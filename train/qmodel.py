"""Quantized model directories: integer weights + scales + bit plan, loadable back into PyTorch.

Layout (a Hugging Face directory plus two things)::

    config.json                 the source model's config (unchanged)
    model.safetensors           every float parameter, except that each planned weight W is
                                replaced by  <layer>.weight_int  (int8 codes, unpacked)
                                and          <layer>.weight_scale (float32, the plan's scale_shape:
                                broadcast over W, or per group (out, in / G))
    bitplan.json                the bit plan (speechmpq.bitplan), the contract export reads
    vocab.json, preprocessor_config.json, tokenizer files   copied from the source model

``read_quantized`` reads it once: the float model with W = weight_int * weight_scale (bit for bit
the weight the fake-quantized model computed, so logits are identical), the integer codes and scales
as numpy, and the validated plan; ``load_quantized`` is its model alone.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechmpq import bitplan as bitplan_lib
from speechmpq.errors import ModelError
from speechmpq.files import replace_folder, staging_folder
from speechmpq.train.models import strip_weight_norm

SIDE_FILES = ("vocab.json", "preprocessor_config.json", "tokenizer_config.json",
              "special_tokens_map.json", "processor_config.json", "added_tokens.json")  # fmt: skip


def save_quantized(model, plan: dict, out_dir: str | Path, source_dir: str | Path | None = None,
                   extra_files: dict[str, str] | None = None) -> Path:
    """Write the finalized (fixed-bits) supernet ``model`` as a quantized model directory."""
    from safetensors.torch import save_file

    from speechmpq.train.supernet import integer_weights

    out_dir = Path(out_dir)
    integers = integer_weights(model)
    if set(integers) != set(plan["layers"]):
        raise ValueError("the bit plan and the model's quantized layers differ")
    tensors = {}
    replaced = tuple(f"{name}.parametrizations.weight." for name in integers)
    for key, value in model.state_dict().items():
        if not key.startswith(replaced):  # other parametrizations (weight norm) stay as they are
            tensors[key] = value.detach().cpu().contiguous()
    for name, (codes, scale, bits) in integers.items():
        if plan["layers"][name]["bits"] != bits:
            raise ValueError(f"{name}: plan says {plan['layers'][name]['bits']} bits, model has {bits}")
        tensors[f"{name}.weight_int"] = codes.contiguous()
        tensors[f"{name}.weight_scale"] = scale.contiguous()
    staging = staging_folder(out_dir)
    model.config.to_json_file(str(staging / "config.json"))
    save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt",
                                                                      "speechmpq": "quantized"})
    (staging / "bitplan.json").write_text(bitplan_lib.dumps(plan))
    if source_dir is not None:
        for name in SIDE_FILES:
            if (Path(source_dir) / name).is_file():
                shutil.copy2(Path(source_dir) / name, staging / name)
    for name, text in (extra_files or {}).items():
        (staging / name).write_text(text)
    return replace_folder(staging, out_dir)


@dataclass
class QuantizedModel:
    """A quantized model directory, read once: the float model for PyTorch, and the integer weights
    and plan export stores in the graph."""

    model: Any  # the float CTC model (eval mode); each planned weight is codes x scale, bit for bit
    plan: dict  # bitplan.json, validated by speechmpq.bitplan
    codes: dict[str, np.ndarray]  # layer -> int8 codes in PyTorch layout: (out, in), (out, in/groups, k)
    # layer -> float32 scales in the plan's scale_shape: broadcast over that layer's codes, or per
    # group (out, in / G), each repeated G times along the input axis
    scales: dict[str, np.ndarray]


def read_quantized(model_dir: str | Path) -> QuantizedModel:
    """Read a quantized model directory (model.safetensors once) and check it against its bit plan:
    every planned layer exists with the plan's shapes and codes on its bit grid. Raises ModelError
    naming the problem."""
    import torch

    from speechmpq.train.quant import dequantize

    model_dir = Path(model_dir)
    model_class, config = _read_config(model_dir)
    try:
        plan = bitplan_lib.load(model_dir / "bitplan.json")
    except bitplan_lib.BitPlanError as error:
        raise ModelError(f"{model_dir}: {error}") from None
    tensors = _read_tensors(model_dir)
    model = model_class(config)
    modules = dict(model.named_modules())
    codes, scales = {}, {}
    for name, entry in plan["layers"].items():
        layer_codes, scale = _integer_weight(model_dir, name, entry, tensors, name in modules)
        strip_weight_norm(modules[name])
        tensors[f"{name}.weight"] = dequantize(layer_codes, scale.to(torch.float32),
                                               bitplan_lib.layer_group_size(plan, entry))
        codes[name], scales[name] = layer_codes.numpy(), scale.numpy().astype(np.float32)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        detail = " ".join(line.strip() for line in str(error).splitlines()[1:3])
        raise ModelError(f"{model_dir}: weights do not match config.json ({detail[:300]})") from None
    _check_vocab(model_dir, config.vocab_size)
    return QuantizedModel(model.eval(), plan, codes, scales)


def load_quantized(model_dir: str | Path):
    """Rebuild a float PyTorch model whose planned weights are integer codes x scales."""
    return read_quantized(model_dir).model


def _read_config(model_dir: Path):
    """(model class, config) from config.json."""
    from speechmpq.train.models import _classes

    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ModelError(f"{model_dir}: not a model directory (no config.json)")
    try:
        config_data = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ModelError(f"{config_path}: invalid JSON ({error})") from None
    except OSError as error:
        raise ModelError(f"{model_dir}: {error}") from None
    config_class, model_class = _classes(config_data.get("model_type"))
    return model_class, config_class.from_dict(config_data)


def _read_tensors(model_dir: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(model_dir / "model.safetensors"))
    except (SafetensorError, OSError) as error:
        raise ModelError(f"{model_dir}: cannot read model.safetensors ({error})") from None


def _integer_weight(model_dir: Path, name: str, entry: dict, tensors: dict, in_model: bool):
    """Pop ``name``'s (codes, scale) from ``tensors``, checked against its plan entry."""
    codes, scale = tensors.pop(f"{name}.weight_int", None), tensors.pop(f"{name}.weight_scale", None)
    if not in_model or codes is None or scale is None:
        raise ModelError(f"{model_dir}: bit plan layer {name} is missing from the model")
    if list(codes.shape) != entry["shape"] or list(scale.shape) != entry["scale_shape"]:
        raise ModelError(f"{model_dir}: {name} has shape {list(codes.shape)} / scale "
                         f"{list(scale.shape)}, the plan says {entry['shape']} / {entry['scale_shape']}")
    low, high = -(2 ** (entry["bits"] - 1)), 2 ** (entry["bits"] - 1) - 1
    if codes.numel() and (int(codes.min()) < low or int(codes.max()) > high):
        raise ModelError(f"{model_dir}: {name} has codes outside the {entry['bits']}-bit grid")
    return codes, scale


def _check_vocab(model_dir: Path, vocab_size: int) -> None:
    vocab_path = model_dir / "vocab.json"
    if vocab_path.is_file():
        vocab = json.loads(vocab_path.read_text())
        if len(vocab) != vocab_size:
            raise ModelError(f"{model_dir}: vocab.json has {len(vocab)} tokens but the model outputs "
                             f"{vocab_size}")
