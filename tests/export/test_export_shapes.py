"""Real-size shapes (random weights) with the demo plan's pattern repeated: sizes and ORT fusion.

Slow: each export traces a 95 M / 316 M parameter model (both together about 2 minutes on 2 cores).
"""

import collections
import json
from pathlib import Path

import onnx
import pytest

from speechmpq import bitplan
from speechmpq.bitplan import container_bits
from speechmpq.cli import main
from speechmpq.runtime import OnnxCTCModel, SessionConfig

REFERENCE = Path(__file__).resolve().parents[2] / "models" / "demo-mpq" / "bitplan.json"
ONNX_TYPES = {2: onnx.TensorProto.INT2, 4: onnx.TensorProto.INT4, 8: onnx.TensorProto.INT8}


@pytest.mark.slow
@pytest.mark.parametrize("preset, layers", [("w2v2-base", 12), ("hubert-large", 24)])
def test_preset_shape_export_sizes_and_fusion(tmp_path, preset, layers):
    out = tmp_path / f"{preset}.onnx"
    assert main(["export", "--preset", preset, "--plan-pattern", str(REFERENCE), "--out", str(out),
                 "--summary", str(tmp_path / "summary.json"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    reference = bitplan.load(REFERENCE)
    assert summary["average_bits"] == pytest.approx(reference["average_bits"], abs=1e-6)
    assert len(summary["layers"]) == 6 * layers
    size = summary["size"]
    assert size["file_bytes"] == out.stat().st_size
    assert 0 < size["overhead_fraction"] < 0.05  # scales, graph and metadata
    model = onnx.load(str(out), load_external_data=False)
    initializers = {t.name: t for t in model.graph.initializer}
    plan = json.loads({p.key: p.value for p in model.metadata_props}["speechmpq.bitplan"])
    dequantizers = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dequantizers) == len(plan["layers"]) == 6 * layers
    for node in dequantizers:
        layer = {p.key: p.value for p in node.metadata_props}["speechmpq.layer"]
        expected = ONNX_TYPES[container_bits(plan["layers"][layer]["bits"])]
        assert initializers[node.input[0]].data_type == expected
    optimized = tmp_path / "optimized.onnx"
    OnnxCTCModel(out, SessionConfig(optimization="extended", optimized_model_path=str(optimized)))
    graph = onnx.load(str(optimized), load_external_data=False).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    assert ops["MatMulNBits"] == 6 * layers and ops["DequantizeLinear"] == 0
