"""CTC speech models: named preset configs, and loading/saving Hugging Face model directories.

Supported classes: ``Wav2Vec2ForCTC``, ``HubertForCTC``, ``WavLMForCTC`` and speechmpq's own
``WhisperForCTC`` (Whisper's pretrained encoder with a CTC head, ``train/whisper_ctc.py``). A model
directory holds ``config.json``, ``model.safetensors``, ``vocab.json``, ``preprocessor_config.json``
and the tokenizer files, exactly as ``transformers`` writes them, so real fine-tuned checkpoints load
the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

from speechmpq.audio import SAMPLE_RATE
from speechmpq.errors import ModelError
from speechmpq.files import replace_folder, staging_folder
from speechmpq.vocab import VOCAB, WORD_DELIMITER, vocab_dict

MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")  # the preset shapes' families; whisper_ctc comes by import

# Shared by every preset: the LibriSpeech character vocabulary, CTC on <pad> as blank.
_COMMON = dict(
    vocab_size=len(VOCAB), pad_token_id=0, bos_token_id=1, eos_token_id=2,
    ctc_loss_reduction="mean", ctc_zero_infinity=True,
)  # fmt: skip

# Small models trained from scratch: per-frame LayerNorm in the conv front end and pre-LN
# transformer blocks (no statistics over time, so chunked streaming sees what training saw), a
# four-layer conv front end keeping wav2vec2's total stride of 320 samples (20 ms frames), and a
# short positional conv so the look-ahead it needs stays small.
_SMALL = dict(
    feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    conv_stride=(5, 4, 4, 4), conv_kernel=(10, 8, 4, 4),
    layerdrop=0.0, hidden_dropout=0.05, attention_dropout=0.05, activation_dropout=0.05,
    feat_proj_dropout=0.05, final_dropout=0.0, mask_time_prob=0.05, mask_time_length=5,
)  # fmt: skip

PRESETS: dict[str, dict] = {
    # Unit tests: a few thousand parameters.
    "tiny": dict(
        _SMALL, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16, 32, 32), num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4,
    ),
    # The committed demo model (trained from scratch on the synthetic corpus).
    "demo": dict(
        _SMALL, hidden_size=256, num_hidden_layers=6, num_attention_heads=4,
        intermediate_size=1024, conv_dim=(64, 128, 192, 256), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=16,
    ),
    # The demo shape with wav2vec2-base's front-end norm (GroupNorm over time on the first conv
    # layer, no conv bias): the group-norm front end whose streaming cache is measured
    # (experiments/groupnorm_cache.py); the demo's short conv stack keeps CPU training affordable.
    "demo-gn": dict(
        _SMALL, hidden_size=256, num_hidden_layers=6, num_attention_heads=4,
        intermediate_size=1024, conv_dim=(64, 128, 192, 256), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=16, feat_extract_norm="group", conv_bias=False,
    ),
    # wav2vec2-base shape (94 M parameters): benchmarks with random weights.
    "w2v2-base": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False,
    ),
    # HuBERT-large shape (316 M parameters): benchmarks with random weights.
    "hubert-large": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    ),
}  # fmt: skip
_DEFAULT_TYPE = {"hubert-large": "hubert"}


def _classes(model_type: str):
    import transformers

    table = {
        "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2ForCTC),
        "hubert": (transformers.HubertConfig, transformers.HubertForCTC),
        "wavlm": (transformers.WavLMConfig, transformers.WavLMForCTC),
    }
    if model_type == "whisper_ctc":  # Whisper's pretrained encoder + a CTC head (speechmpq import-whisper)
        from speechmpq.train.whisper_ctc import WhisperCTCConfig, WhisperForCTC

        table["whisper_ctc"] = (WhisperCTCConfig, WhisperForCTC)
    if model_type not in table:
        raise ModelError(f"unsupported model type {model_type!r}; speechmpq handles "
                         f"{(*MODEL_TYPES, 'whisper_ctc')}")
    return table[model_type]


def default_model_type(preset: str) -> str:
    return _DEFAULT_TYPE.get(preset, "wav2vec2")


def build_config(preset: str, model_type: str | None = None):
    """The Hugging Face config of a named preset shape (no weights)."""
    if preset not in PRESETS:
        raise ModelError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    if model_type not in (None, *MODEL_TYPES):
        raise ModelError(f"the presets are shapes of {MODEL_TYPES}, not {model_type!r} (Whisper-encoder "
                         "models come from speechmpq import-whisper)")
    return _classes(model_type or default_model_type(preset))[0](**_COMMON, **PRESETS[preset])


def build_model(preset: str, model_type: str | None = None, seed: int = 0):
    """A randomly initialised CTC model of a named preset shape."""
    import torch

    config = build_config(preset, model_type)
    torch.manual_seed(seed)
    return _classes(model_type or default_model_type(preset))[1](config)


def strip_weight_norm(module) -> None:
    """Make ``module.weight`` a plain parameter holding its effective value, in place. The positional
    conv is weight-normalised (a parametrization or, in older transformers, weight_g/weight_v);
    quantizers and exporters work on the weight it computes."""
    import torch
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(module, "weight"):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    elif hasattr(module, "weight_g"):
        torch.nn.utils.remove_weight_norm(module)


def load_model(model_dir: str | Path):
    """Load a CTC model from a local Hugging Face directory (never from a hub); a quantized
    directory (with bitplan.json) loads as float weights = integer codes x scales."""
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ModelError(f"{model_dir}: not a model directory (no config.json)")
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except json.JSONDecodeError as error:
        raise ModelError(f"{config_path}: invalid JSON ({error})") from None
    _, model_class = _classes(model_type)
    if (model_dir / "whisper_base.json").is_file():  # written by `speechmpq whisper-delta`
        from speechmpq.train.whisper_delta import load_delta

        model = load_delta(model_dir)
    elif (model_dir / "bitplan.json").is_file():  # written by `speechmpq quantize`
        from speechmpq.train.qmodel import load_quantized

        model = load_quantized(model_dir)
    else:
        try:
            model = model_class.from_pretrained(str(model_dir), local_files_only=True)
        except Exception as error:  # transformers/safetensors raise many types for broken files
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            raise ModelError(f"{model_dir}: cannot load model ({first_line})") from None
    vocab_path = model_dir / "vocab.json"
    if vocab_path.is_file():
        vocab = json.loads(vocab_path.read_text())
        if len(vocab) != model.config.vocab_size:
            raise ModelError(
                f"{model_dir}: vocab.json has {len(vocab)} tokens but the model outputs "
                f"{model.config.vocab_size}"
            )
    return model.eval()


def model_vocab(model_dir: str | Path | None) -> list[str]:
    """Tokens in id order, from the directory's vocab.json (default: the LibriSpeech set)."""
    if model_dir is not None and (Path(model_dir) / "vocab.json").is_file():
        vocab = json.loads((Path(model_dir) / "vocab.json").read_text())
        return [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    return list(VOCAB)


def feature_settings(model_dir: str | Path) -> dict:
    """Input handling from ``preprocessor_config.json``: per-utterance normalisation, and whether
    the model takes an attention mask (group-norm models such as wav2vec2-base must not get one:
    they are fed one utterance at a time instead). Missing file: transformers' defaults."""
    path = Path(model_dir) / "preprocessor_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    return {"do_normalize": bool(config.get("do_normalize", True)),
            "return_attention_mask": bool(config.get("return_attention_mask", False))}


def save_model(model, model_dir: str | Path, do_normalize: bool = False) -> Path:
    """Write a complete Hugging Face model directory, atomically (built beside, then renamed)."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model_dir = Path(model_dir)
    staging = staging_folder(model_dir)
    model.save_pretrained(str(staging), safe_serialization=True)
    (staging / "vocab.json").write_text(json.dumps(vocab_dict(), indent=1) + "\n")
    tokenizer = Wav2Vec2CTCTokenizer(
        str(staging / "vocab.json"), unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
        eos_token="</s>", word_delimiter_token=WORD_DELIMITER, do_lower_case=False,
    )  # fmt: skip
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=do_normalize,
        return_attention_mask=True,
    )  # fmt: skip
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(staging))
    extractor.save_pretrained(str(staging))  # preprocessor_config.json, read by other tools too
    return replace_folder(staging, model_dir)


def parameter_breakdown(model) -> dict:
    """Parameter counts, and the share held by transformer linear weights (q, k, v, out, FFN)."""
    import torch

    total = sum(p.numel() for p in model.parameters())
    linear = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".encoder.layers." in f".{name}":
            linear += module.weight.numel()
    return {"total": total, "transformer_linear_weights": linear,
            "transformer_linear_share": linear / total}
