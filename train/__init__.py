"""speechmpq.train: the training stage (torch) — synthetic corpus, CTC models, full-precision
training, mixed-precision quantization-aware training.

    from speechmpq.train import QuantizeConfig, SupernetConfig, quantize_model

    summary = quantize_model(QuantizeConfig(model="models/demo", train_data="data/train", out="run"))

The names below load on first use (module ``__getattr__``), so ``import speechmpq.train`` and the
corpus worker processes (``speechmpq.train.corpus.build``) never import torch.
"""

from __future__ import annotations

import importlib

__all__ = [
    # synthetic corpus (no torch)
    "CorpusConfig", "build_corpus", "SentenceGenerator",
    # models
    "build_model", "load_model", "save_model", "load_quantized", "save_quantized",
    # full-precision training
    "TrainConfig", "train_fp",
    # mixed-precision quantization-aware training
    "QuantizeConfig", "SupernetConfig", "TRANSFORMER_LINEARS", "quantize_model", "prepare_supernet",
    "finalize", "fix_bits",
    # evaluation
    "evaluate_torch", "transcribe_torch",
]  # fmt: skip

# module (under speechmpq.train) -> the public names it defines
_MODULES = {
    "corpus.build": ("CorpusConfig", "build_corpus"),
    "corpus.textgen": ("SentenceGenerator",),
    "models": ("build_model", "load_model", "save_model"),
    "qmodel": ("load_quantized", "save_quantized"),
    "trainer": ("TrainConfig", "train_fp"),
    "quantize_config": ("QuantizeConfig",),
    "supernet": ("SupernetConfig", "TRANSFORMER_LINEARS", "prepare_supernet", "finalize", "fix_bits"),
    "quantize": ("quantize_model",),
    "evaluate": ("evaluate_torch", "transcribe_torch"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
