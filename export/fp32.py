"""PyTorch CTC model -> float32 ONNX graph: ``input_values`` (batch, samples) -> ``logits``
(batch, frames, vocab), both axes dynamic.

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


def export_fp32(model, cfg: ExportConfig) -> onnx.ModelProto:
    """Trace ``model`` (eval mode, float32, CPU) into an in-memory ONNX model at opset 17."""
    model = model.to("cpu").float().eval()
    wrapper = LogitsOnly(model).eval()
    example = (torch.randn(1, TRACE_SAMPLES, generator=torch.Generator().manual_seed(0)),)
    with tempfile.TemporaryDirectory(prefix="speechmpq-export-") as tmp:
        path = Path(tmp) / "fp32.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if cfg.exporter == "torchscript":
                    torch.onnx.export(
                        wrapper, example, str(path), dynamo=False, opset_version=FP32_OPSET,
                        input_names=["input_values"], output_names=["logits"],
                        dynamic_axes={"input_values": {0: "batch", 1: "samples"},
                                      "logits": {0: "batch", 1: "frames"}},
                    )  # fmt: skip
                else:
                    _export_dynamo(wrapper, example, path)
            except ImportError as error:
                raise SpeechmpqError(f"the {cfg.exporter} exporter needs {error.name}: "
                                     f"pip install {error.name}") from None
        return onnx.load(str(path))


def _export_dynamo(wrapper, example, path: Path) -> None:
    import onnxscript  # noqa: F401  (the dynamo exporter's dependency; a clear error if missing)

    batch, samples = torch.export.Dim("batch"), torch.export.Dim("samples", min=400)
    program = torch.onnx.export(
        wrapper, example, dynamo=True, opset_version=max(FP32_OPSET, 18), input_names=["input_values"],
        output_names=["logits"], dynamic_shapes=({0: batch, 1: samples},), verbose=False,
    )  # fmt: skip
    program.save(str(path), external_data=False)
