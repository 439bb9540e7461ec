"""Per-group quantized models through export: blocked DequantizeLinear at the group size, the weight
ORT dequantizes vs PyTorch's (in quantization steps), whole-model parity, the RTN plan paths."""

import collections
import itertools
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from speechmpq import bitplan
from speechmpq.bitplan import container_bits
from speechmpq.export import ExportConfig, Source, export_onnx
from speechmpq.runtime import OnnxCTCModel, SessionConfig
from speechmpq.train.models import build_model, load_model, save_model
from speechmpq.train.qmodel import save_quantized
from speechmpq.train.supernet import SupernetConfig, finalize, plan_layers, prepare_supernet

# tiny: q/k/v/out projections and intermediate_dense take 32 inputs, output_dense 64
LAYERS = {32: SupernetConfig().layers, 64: {r"re:feed_forward\.output_dense$": "search"}}
CASES = list(itertools.product((2, 4, 8), (32, 64)))


def _per_group_dir(path, bits, group_size):
    model = build_model("tiny", seed=5).eval()
    prepare_supernet(model, SupernetConfig(candidates=(bits,), granularity="per-group", group_size=group_size,
                                           layers=LAYERS[group_size]))
    finalize(model)
    plan = bitplan.make_plan(plan_layers(model), "uniform", [bits], "per-group", group_size=group_size)
    save_model(build_model("tiny", seed=5), path / "fp")
    return save_quantized(model, plan, path / "q", source_dir=path / "fp"), plan


@pytest.fixture(scope="module", params=CASES, ids=[f"int{b}-g{g}" for b, g in CASES])
def exported(request, tmp_path_factory):
    bits, group_size = request.param
    path = tmp_path_factory.mktemp(f"group-{bits}-{group_size}")
    model_dir, plan = _per_group_dir(path, bits, group_size)
    # the export's block size (256) is larger than the group size: each layer takes its group size
    summary = export_onnx(Source(model_dir=model_dir), path / "model.onnx", ExportConfig(kernel_table="none"),
                          progress=False)
    return {"dir": model_dir, "plan": plan, "onnx": path / "model.onnx", "summary": summary,
            "bits": bits, "group_size": group_size}


def _dequantizers(model):
    inits = {t.name: t for t in model.graph.initializer}
    return [(n, inits) for n in model.graph.node if n.op_type == "DequantizeLinear"]


def test_each_layer_is_a_blocked_dequantize_at_the_group_size(exported):
    model = onnx.load(str(exported["onnx"]))
    plan, group_size = exported["plan"], exported["group_size"]
    found = _dequantizers(model)
    assert len(found) == len(plan["layers"]) > 0
    for node, inits in found:
        meta = {p.key: p.value for p in node.metadata_props}
        out, k = plan["layers"][meta["speechmpq.layer"]]["shape"]
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attributes == {"axis": 0, "block_size": group_size}
        assert meta["speechmpq.block_size"] == str(group_size)
        assert list(inits[node.input[1]].dims) == [k // group_size, out]  # (K / G, N): no repetition
        codes = inits[node.input[0]]
        assert list(codes.dims) == [k, out]
        assert codes.data_type == {2: TensorProto.INT2, 4: TensorProto.INT4, 8: TensorProto.INT8}[
            container_bits(exported["bits"])]
    records = exported["summary"]["layers"]
    assert {r["block_size"] for r in records} == {group_size}
    assert sum(r["scale_bytes"] for r in records) == 4 * sum(
        np.prod(e["scale_shape"]) for e in plan["layers"].values())
    assert OnnxCTCModel(exported["onnx"]).info.bitplan == plan  # the runtime reads the v2 plan back


def _run_alone(nodes, inputs, initializers, output, feeds, optimization):
    result = helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "layer", inputs, [result], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])
    options = ort.SessionOptions()
    options.graph_optimization_level = optimization
    options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run([output], feeds)[0]


def test_ort_weight_and_fused_matmul_match_pytorch_in_quantization_steps(exported):
    """ORT's dequantized weight equals PyTorch's (0 steps); ORT's fused MatMulNBits output is within
    1e-3 of a quantization step per weight: |y_ort - y_torch| <= 1e-3 * |x| @ step^T."""
    model = onnx.load(str(exported["onnx"]))
    modules = dict(load_model(exported["dir"]).named_modules())
    group_size = exported["group_size"]
    checked = set()
    for node, inits in _dequantizers(model):
        name = {p.key: p.value for p in node.metadata_props}["speechmpq.layer"]
        torch_weight = modules[name].weight.detach().numpy()  # (N, K) = codes x expanded scale
        step = np.repeat(numpy_helper.to_array(inits[node.input[1]]).T, group_size, axis=1)  # (N, K)
        pieces = [inits[node.input[0]], inits[node.input[1]]]
        plain = helper.make_node(node.op_type, list(node.input), ["w"], axis=0, block_size=group_size)
        weight = _run_alone([plain], [], pieces, "w", {}, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        assert np.array_equal(weight.T, torch_weight)  # 0 quantization steps apart
        x = np.random.default_rng(0).standard_normal((3, torch_weight.shape[1])).astype(np.float32)
        matmul = helper.make_node("MatMul", ["x", "w"], ["y"])
        x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))
        y = _run_alone([plain, matmul], [x_info], pieces, "y", {"x": x},
                       ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
        reference = x.astype(np.float64) @ torch_weight.T.astype(np.float64)
        bound = 1e-3 * np.abs(x).astype(np.float64) @ step.T.astype(np.float64)
        assert (np.abs(y - reference) <= bound).all()
        checked.add(name)
    assert len(checked) == len(exported["plan"]["layers"])


def test_ort_runs_the_whole_model_like_pytorch(exported, tmp_path):
    torch_model = load_model(exported["dir"])
    audio = torch.randn(2, 12345, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = torch_model(audio).logits.numpy()
    plain = OnnxCTCModel(exported["onnx"], SessionConfig(optimization="disabled"))
    # float32 accumulation-order noise only: the graph's integers x scales are the PyTorch weights
    assert np.abs(plain.logits(audio.numpy()) - reference).max() <= 1e-4 * np.abs(reference).max()
    optimized = tmp_path / "optimized.onnx"
    fused = OnnxCTCModel(exported["onnx"], SessionConfig(optimization="extended", accuracy_level=0,
                                                         optimized_model_path=str(optimized)))
    ops = collections.Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    assert ops["MatMulNBits"] == len(exported["plan"]["layers"])
    assert np.abs(fused.logits(audio.numpy()) - reference).max() <= 1e-3 * np.abs(reference).max()


def test_a_kernel_map_and_a_small_export_block_leave_per_group_layers_at_their_group(tmp_path):
    model_dir, plan = _per_group_dir(tmp_path, 4, 32)
    out = tmp_path / "m.onnx"
    export_onnx(Source(model_dir=model_dir), out, ExportConfig(block_size=16), progress=False)
    for node, _ in _dequantizers(onnx.load(str(out))):
        assert {a.name: helper.get_attribute_value(a) for a in node.attribute}["block_size"] == 32


def test_rtn_plan_and_plan_pattern_pass_per_group_through(tmp_path):
    model_dir = save_model(build_model("tiny", seed=2), tmp_path / "fp")
    _, reference = _per_group_dir(tmp_path / "ref", 2, 32)
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(bitplan.dumps(reference))
    for key in ("plan", "plan_pattern"):
        out = tmp_path / f"{key}.onnx"
        summary = export_onnx(Source(model_dir=model_dir, **{key: plan_path}), out,
                              ExportConfig(kernel_table="none"), progress=False)
        metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        written = json.loads(metadata["speechmpq.bitplan"])
        assert written["granularity"] == "per-group" and written["group_size"] == 32
        assert {r["block_size"] for r in summary["layers"]} == {32}
        for node, inits in _dequantizers(onnx.load(str(out))):
            out_features, k = written["layers"][{p.key: p.value for p in node.metadata_props}[
                "speechmpq.layer"]]["shape"]
            assert list(inits[node.input[1]].dims) == [k // 32, out_features]
