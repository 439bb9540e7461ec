"""onnxruntime's weight-only quantizers on the searched layers of an exported graph: only those layers
change, the stored bits are what the graph holds, a hand mix gives each layer type its own bits, and
the quantized graph runs and stays near the float one."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from speechmpq.export import ExportConfig, Source, export_onnx
from speechmpq.export.ort_weight_only import (
    GROUPS,
    quantize_weight_only,
    searched_matmuls,
    stored_bits,
    validate_spec,
)
from speechmpq.train.models import build_model, save_model


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    path = tmp_path_factory.mktemp("ortwo")
    save_model(build_model("tiny", seed=3), path / "fp")
    export_onnx(Source(model_dir=path / "fp"), path / "fp32.onnx", ExportConfig(kernel_table="none"),
                progress=False)
    return onnx.load(str(path / "fp32.onnx"))


def _logits(model, audio):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"input_values": audio}
    for given in session.get_inputs()[1:]:
        feeds[given.name] = np.zeros((1, 0, given.shape[-1]), np.float32)
    return session.run(None, feeds)[0]


def test_only_the_searched_layers_are_quantized(fp32):
    searched = searched_matmuls(fp32)
    assert len(searched) == 12  # tiny: 2 layers x (q, k, v, out, intermediate, output)
    quantized = quantize_weight_only(fp32, {"algo": "default", "bits": 4, "block": 32})
    nbits = [n for n in quantized.graph.node if n.op_type == "MatMulNBits"]
    assert sorted(n.name.removesuffix("_Q4") for n in nbits) == sorted(searched)
    left = [n.name for n in quantized.graph.node if n.op_type == "MatMul"]
    assert "/feature_projection/projection/MatMul" in left  # outside the search: untouched
    assert len([n for n in fp32.graph.node if n.op_type == "MatMulNBits"]) == 0  # the input is not mutated


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_stored_bits_are_the_bytes_in_the_graph(fp32, bits):
    quantized = quantize_weight_only(fp32, {"algo": "default", "bits": bits, "block": 32})
    sizes = stored_bits(quantized, searched_matmuls(fp32))
    initializers = {t.name: numpy_helper.to_array(t) for t in quantized.graph.initializer}
    total = weights = 0
    for node in quantized.graph.node:
        if node.op_type == "MatMulNBits":
            attributes = {a.name: a.i for a in node.attribute}
            weights += attributes["K"] * attributes["N"]
            total += 8 * sum(initializers[i].nbytes for i in node.input[1:4] if i in initializers)
    assert sizes["stored_bits_per_weight"] == pytest.approx(total / weights)
    # codes, one fp32 scale and one packed uint8 zero point per block of 32
    assert bits + 32 / 32 <= sizes["stored_bits_per_weight"] <= bits + 32 / 32 + 8 / 32
    assert sizes["average_bits"] == bits


def test_a_hand_mix_gives_each_layer_type_its_bits_and_runs(fp32):
    spec = {"mix": {"attention": {"algo": "default", "bits": 2, "block": 32},
                    "ffn": {"algo": "default", "bits": 4, "block": 32}}}
    quantized = quantize_weight_only(fp32, spec)
    sizes = stored_bits(quantized, searched_matmuls(fp32))
    for name, bits in sizes["layer_bits"].items():
        assert bits == (2 if GROUPS["attention"].search(name) else 4)
    audio = np.random.default_rng(0).standard_normal((1, 16000)).astype(np.float32) * 0.1
    reference, mixed = _logits(fp32, audio), _logits(quantized, audio)
    assert mixed.shape == reference.shape and np.isfinite(mixed).all()
    assert not np.array_equal(mixed, reference)


def test_a_searched_layer_left_in_float_counts_32_bits(fp32):
    sizes = stored_bits(fp32, searched_matmuls(fp32))
    assert sizes["stored_bits_per_weight"] == 32 and sizes["average_bits"] == 32


@pytest.mark.parametrize("spec, message", [
    ({"algo": "awq", "bits": 4, "block": 32}, "algo must be"),
    ({"algo": "default", "bits": 3, "block": 32}, "bits must be"),
    ({"algo": "default", "bits": 4, "block": 48}, "block must be"),
    ({"mix": {"attention": {"algo": "default", "bits": 2, "block": 32}}}, "a mix gives"),
])
def test_bad_specs_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        validate_spec(spec)


def test_rtn_at_two_bits_is_refused_not_faked(fp32):
    with pytest.raises(ValueError, match="4-bit weights only"):
        quantize_weight_only(fp32, {"algo": "rtn", "bits": 2, "block": 32})


def test_gptq_takes_calibration_feeds(fp32):
    audio = np.random.default_rng(2).standard_normal((1, 8000)).astype(np.float32) * 0.1
    hidden = next(i for i in fp32.graph.input if i.name == "cached_features").type.tensor_type.shape.dim[-1]
    feeds = [{"input_values": audio, "cached_features": np.zeros((1, 0, hidden.dim_value), np.float32)}]
    quantized = quantize_weight_only(fp32, {"algo": "gptq", "bits": 4, "block": 16}, feeds)
    assert stored_bits(quantized, searched_matmuls(fp32))["average_bits"] == 4
    with pytest.raises(ValueError, match="calibration"):
        quantize_weight_only(fp32, {"algo": "gptq", "bits": 4, "block": 32})


def test_the_searched_matmuls_of_both_families_are_found():
    from speechmpq.export.ort_weight_only import SEARCHED_MATMUL

    for prefix in ("/encoder/layers.3", "/model/whisper/layers.11"):  # wav2vec2 family, WhisperForCTC
        for layer in ("attention/q_proj", "attention/out_proj", "feed_forward/output_dense"):
            assert SEARCHED_MATMUL.match(f"{prefix}/{layer}/MatMul")
        assert not SEARCHED_MATMUL.match(f"{prefix}/attention/MatMul")  # the q·k product, not a weight
    assert not SEARCHED_MATMUL.match("/model/whisper/frontend/MatMul") and not SEARCHED_MATMUL.match(
        "/lm_head/MatMul")
