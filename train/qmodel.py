"""Quantized model directories: integer weights + scales + bit plan, loadable back into PyTorch.

Layout (a Hugging Face directory plus two things)::

    config.json                 the source model's config (unchanged)
    model.safetensors           every float parameter, except that each planned weight W is
                                replaced by  <layer>.weight_int  (int8 codes, unpacked)
                                and          <layer>.weight_scale (float32, broadcast over W)
    bitplan.json                the bit plan (speechmpq.bitplan), the contract export reads
    vocab.json, preprocessor_config.json, tokenizer files   copied from the source model

``load_quantized`` rebuilds the float model with W = weight_int * weight_scale, which is bit for bit
the weight the fake-quantized model computed, so logits are identical.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from speechmpq import bitplan as bitplan_lib
from speechmpq.errors import ModelError
from speechmpq.files import replace_folder, staging_folder

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


def load_quantized(model_dir: str | Path):
    """Rebuild a float PyTorch model whose planned weights are integer codes x scales."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from speechmpq.train.models import _classes
    from speechmpq.train.supernet import _strip_weight_norm

    model_dir = Path(model_dir)
    try:
        plan = bitplan_lib.load(model_dir / "bitplan.json")
        config_data = json.loads((model_dir / "config.json").read_text())
    except (bitplan_lib.BitPlanError, OSError, json.JSONDecodeError) as error:
        raise ModelError(f"{model_dir}: {error}") from None
    config_class, model_class = _classes(config_data.get("model_type"))
    config = config_class.from_dict(config_data)
    try:
        tensors = load_file(str(model_dir / "model.safetensors"))
    except (SafetensorError, OSError) as error:
        raise ModelError(f"{model_dir}: cannot read model.safetensors ({error})") from None
    model = model_class(config)
    modules = dict(model.named_modules())
    for name, entry in plan["layers"].items():
        module = modules.get(name)
        codes, scale = tensors.pop(f"{name}.weight_int", None), tensors.pop(f"{name}.weight_scale", None)
        if module is None or codes is None or scale is None:
            raise ModelError(f"{model_dir}: bit plan layer {name} is missing from the model")
        if list(codes.shape) != entry["shape"] or list(scale.shape) != entry["scale_shape"]:
            raise ModelError(f"{model_dir}: {name} has shape {list(codes.shape)} / scale "
                             f"{list(scale.shape)}, the plan says {entry['shape']} / {entry['scale_shape']}")
        low, high = -(2 ** (entry["bits"] - 1)), 2 ** (entry["bits"] - 1) - 1
        if codes.numel() and (int(codes.min()) < low or int(codes.max()) > high):
            raise ModelError(f"{model_dir}: {name} has codes outside the {entry['bits']}-bit grid")
        _strip_weight_norm(module)
        tensors[f"{name}.weight"] = codes.to(torch.float32) * scale
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        detail = " ".join(line.strip() for line in str(error).splitlines()[1:3])
        raise ModelError(f"{model_dir}: weights do not match config.json ({detail[:300]})") from None
    model.bitplan = plan
    return model.eval()
