"""speechmpq.train: the training stage (torch) — synthetic corpus, CTC models, full-precision
training, mixed-precision quantization-aware training.

    from speechmpq.train import QuantizeConfig, SupernetConfig, quantize_model

    summary = quantize_model(QuantizeConfig(model="models/demo", train_data="data/train", out="run"))

The names below load on first use (module ``__getattr__``), so ``import speechmpq.train`` and the
corpus worker processes (``speechmpq.train.corpus.build``) never import torch.
"""

from __future__ import annotations

from speechmpq.lazy_face import lazy_face

# module (under speechmpq.train) -> the public names it defines, grouped by concept
_EXPORTS = {
    # synthetic corpus (no torch)
    "corpus.build": ("CorpusConfig", "build_corpus"),
    "corpus.textgen": ("SentenceGenerator",),
    # models, float and quantized (read_quantized: the plan, codes and scales export reads, once)
    "models": ("build_model", "load_model", "save_model"),
    "qmodel": ("load_quantized", "save_quantized", "read_quantized", "QuantizedModel"),
    # full-precision training
    "trainer": ("TrainConfig", "train_fp"),
    # mixed-precision quantization-aware training: the run, its settings, the supernet steps
    "quantize": ("quantize_model",),
    "quantize_config": ("QuantizeConfig",),
    "supernet": ("SupernetConfig", "TRANSFORMER_LINEARS", "prepare_supernet", "finalize", "fix_bits"),
    # evaluation of PyTorch models
    "evaluate": ("evaluate_torch", "transcribe_torch"),
}
__all__, __getattr__, __dir__ = lazy_face(__name__, {f"{__name__}.{module}": names
                                                   for module, names in _EXPORTS.items()})
