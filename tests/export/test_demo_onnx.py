"""The committed reference artefact models/demo-mpq.onnx: what it says about itself, and that it
transcribes like the PyTorch quantized model it came from."""

import json
from pathlib import Path

import onnx

from speechmpq import bitplan
from speechmpq.audio import load_audio
from speechmpq.datasets import read_dataset
from speechmpq.runtime import OnnxCTCModel
from speechmpq.train.evaluate import transcribe_torch
from speechmpq.train.models import load_model

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_demo_onnx_carries_the_plan_it_was_exported_from():
    model = onnx.load(str(MODELS / "demo-mpq.onnx"))
    metadata = {p.key: p.value for p in model.metadata_props}
    assert json.loads(metadata["speechmpq.bitplan"]) == bitplan.load(MODELS / "demo-mpq" / "bitplan.json")
    assert metadata["speechmpq.weights"] == "mpq" and metadata["sample_rate"] == "16000"
    dequantizers = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dequantizers) == len(json.loads(metadata["speechmpq.bitplan"])["layers"]) == 36
    # committed for every device: front-end cache, MatMulNBits everywhere (exported with
    # --kernel-table none; the x86 kernel map is applied by exporting for that target)
    assert metadata["speechmpq.frontend_cache"] == "exact" and "speechmpq.kernels" not in metadata


def test_demo_onnx_transcribes_like_pytorch(tiny_corpus):
    utterances = read_dataset(tiny_corpus / "test-clean")[:6]
    reference = transcribe_torch(load_model(MODELS / "demo-mpq"), utterances, progress=False,
                                 attention_mask=False)
    model = OnnxCTCModel(MODELS / "demo-mpq.onnx")  # the default: the model's own accuracy level
    assert model.accuracy_level == 0
    assert [model.transcribe(load_audio(u.path)) for u in utterances] == reference
