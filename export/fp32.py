"""PyTorch CTC model -> float32 ONNX graph: ``input_values`` (batch, samples) -> ``logits``
(batch, frames, vocab), both axes dynamic.

With the front-end cache (the default) the graph also takes ``cached_features`` (batch, cached
frames, conv channels): conv-encoder frames a streaming runtime computed in earlier windows, put
before the frames of ``input_values``, and also returns ``features``, the new frames, for the runtime
to keep. With zero cached frames the logits are the plain model's (offline use, parity tests).

The graph has no attention-mask input: a batch must hold utterances of one length (the streaming
runtime feeds one stream at a time). Input normalisation stays outside the graph; the metadata says
whether the model expects it.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import onnx
import torch

from speechmpq.errors import SpeechmpqError
from speechmpq.export.config import ExportConfig

FP32_OPSET = 17  # LayerNormalization; everything the TorchScript exporter emits for these models
TRACE_SAMPLES = 16000  # tracing input: 1 s; parity tests use other lengths


class LogitsOnly(torch.nn.Module):
    """forward(input_values) -> logits tensor alone (Hugging Face models return an output object)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_values):
        return self.model(input_values).logits


class CachedFrontEnd(torch.nn.Module):
    """forward(input_values, cached_features) -> (logits over cached + new frames, new frames).

    The Hugging Face forward, split after the conv feature encoder (eval mode: no masking)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.base = getattr(model, model.base_model_prefix)
        if getattr(self.base, "adapter", None) is not None:
            raise SpeechmpqError("models with an adapter cannot be exported with the front-end cache")

    def forward(self, input_values, cached_features):
        features = self.base.feature_extractor(input_values).transpose(1, 2)
        hidden = self.base.feature_projection(torch.cat([cached_features, features], dim=1))
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        hidden = self.base.encoder(hidden)[0]
        return self.model.lm_head(self.model.dropout(hidden)), features


def conv_channels(model) -> int:
    return int(model.config.conv_dim[-1])


def export_fp32(model, cfg: ExportConfig) -> onnx.ModelProto:
    """Trace ``model`` (eval mode, float32, CPU) into an in-memory ONNX model at opset 17."""
    model = model.to("cpu").float().eval()
    samples = torch.randn(1, TRACE_SAMPLES, generator=torch.Generator().manual_seed(0))
    if cfg.frontend_cache:
        wrapper = CachedFrontEnd(model).eval()
        example = (
            samples,
            torch.randn(1, 3, conv_channels(model), generator=torch.Generator().manual_seed(1)),
        )
        names = {
            "input_names": ["input_values", "cached_features"],
            "output_names": ["logits", "features"],
            "dynamic_axes": {
                "input_values": {0: "batch", 1: "samples"},
                "cached_features": {0: "batch", 1: "cached_frames"},
                "logits": {0: "batch", 1: "frames"},
                "features": {0: "batch", 1: "new_frames"},
            },
        }
    else:
        wrapper, example = LogitsOnly(model).eval(), (samples,)
        names = {
            "input_names": ["input_values"],
            "output_names": ["logits"],
            "dynamic_axes": {"input_values": {0: "batch", 1: "samples"}, "logits": {0: "batch", 1: "frames"}},
        }
    with tempfile.TemporaryDirectory(prefix="speechmpq-export-") as tmp:
        path = Path(tmp) / "fp32.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if cfg.exporter == "torchscript":
                    torch.onnx.export(
                        wrapper, example, str(path), dynamo=False, opset_version=FP32_OPSET, **names
                    )
                else:
                    _export_dynamo(wrapper, example, path, names)
            except ImportError as error:
                raise SpeechmpqError(f"the {cfg.exporter} exporter needs {error.name}: "
                                     f"pip install {error.name}") from None
        return onnx.load(str(path))


def _export_dynamo(wrapper, example, path: Path, names: dict) -> None:
    import onnxscript  # noqa: F401  (the dynamo exporter's dependency; a clear error if missing)

    batch, samples = torch.export.Dim("batch"), torch.export.Dim("samples", min=400)
    shapes = ({0: batch, 1: samples},) + (
        ({0: batch, 1: torch.export.Dim("cached_frames")},) if len(example) == 2 else ()
    )
    program = torch.onnx.export(
        wrapper, example, dynamo=True, opset_version=max(FP32_OPSET, 18), input_names=names["input_names"],
        output_names=names["output_names"], dynamic_shapes=shapes, verbose=False,
    )  # fmt: skip
    program.save(str(path), external_data=False)
