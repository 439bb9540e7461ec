"""The kernel table and the per-layer kernel map: each kernel's graph against numpy and against the
op onnxruntime fuses it into, the choice from a given table, and a table embedded in an export."""

import collections
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.numpy import load_file
from test_export import _quantized_dir  # noqa: E402 (pytest puts this folder on the path)

from speechmpq.cli import main
from speechmpq.export import ExportConfig, Source, export_onnx
from speechmpq.kernel_graphs import linear_model
from speechmpq.kernel_table import choose, default_rules, load_table, parse_kernel, rules_from_table
from speechmpq.runtime import OnnxCTCModel, SessionConfig
from speechmpq.train.models import load_model

# kernel -> (op onnxruntime runs after fusion, max error relative to the largest output)
KERNELS = {
    "fp32": ("MatMul", 1e-5),
    "int8-dynamic": ("DynamicQuantizeMatMul", 0.03),  # uint8 activations, one scale per call
    "int8-dynamic-from4": ("DynamicQuantizeMatMul", 0.03),
    "int8-dynamic-from2": ("DynamicQuantizeMatMul", 0.03),
    "nbits8-block32": ("MatMulNBits", 1e-5),
    "nbits4-block64": ("MatMulNBits", 1e-5),
    "nbits2-block128": ("MatMulNBits", 1e-5),
}


def _reference(kernel, k, n, x, limit):
    codes = np.random.default_rng(0).integers(-limit, limit, (k, n)).astype(np.float32)
    return x @ (codes * np.float32(0.02 / limit))


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("level", [0, 4])
def test_each_kernel_computes_the_matmul_and_fuses_into_its_op(kernel, level, tmp_path):
    op, tolerance = KERNELS[kernel]
    if kernel.startswith("nbits") and level == 4:
        tolerance = 0.03  # int8 activations per block inside MatMulNBits
    k, n = 128, 96
    x = np.random.default_rng(1).standard_normal((37, k)).astype(np.float32)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(level))
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    limit = (
        64 if kernel == "int8-dynamic" else 2 ** (min(parse_kernel(kernel)[1], 8) - 1)
    )  # see the next test
    session = ort.InferenceSession(
        linear_model(kernel, k, n, code_limit=limit).SerializeToString(),
        options,
        providers=["CPUExecutionProvider"],
    )
    y = session.run(None, {"x": x})[0]
    reference = _reference(kernel, k, n, x, limit)
    assert np.abs(y - reference).max() <= tolerance * np.abs(reference).max()
    ops = collections.Counter(node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    assert ops == {op: 1}, ops  # the Cast of a 2/4-bit weight is folded at load: nothing else runs


def test_int8_dynamic_saturates_full_range_codes_without_vnni_and_the_map_avoids_it():
    """onnxruntime's AVX2 uint8 x int8 GEMM adds product pairs in int16: codes beyond +-64 overflow."""
    from speechmpq.kernel_table import saturation_free
    from speechmpq.machine import kernel_machine as machine

    k, n = 128, 96
    x = np.random.default_rng(1).standard_normal((37, k)).astype(np.float32)
    session = ort.InferenceSession(
        linear_model("int8-dynamic", k, n).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    reference = _reference("int8-dynamic", k, n, x, 128)
    error = np.abs(session.run(None, {"x": x})[0] - reference).max() / np.abs(reference).max()
    if not saturation_free(128, machine()["isa"]) and machine()["arch"] == "x86_64":
        assert error > 0.05  # why the map checks the codes (if this fails, the kernel got fixed)
    table = _table({"int8-dynamic": (0.1, 0.1), "nbits8-block32": (0.8, 0.8)})
    layers = [
        {"name": "wide", "container": 8, "k": 64, "n": 64, "max_code": 127},
        {"name": "narrow", "container": 8, "k": 64, "n": 64, "max_code": 64},
    ]
    kernels = choose(layers, table, None, 0, 256)[1]
    assert kernels["wide"]["kernel"] == "nbits8-block32" and kernels["narrow"]["kernel"] == "int8-dynamic"
    table["machine"]["isa"] = ["avx2", "avx512_vnni"]
    assert choose(layers, table, None, 0, 256)[1]["wide"]["kernel"] == "int8-dynamic"


def _table(times):
    """A hand-made table: one shape (64 x 64, 10 layers), the given kernel -> ms at level 0 / 4."""
    kernels = []
    for kernel, (level0, level4) in times.items():
        if kernel.startswith("nbits"):
            kernels += [
                {"kernel": kernel, "accuracy_level": 0, "median_ms": level0},
                {"kernel": kernel, "accuracy_level": 4, "median_ms": level4},
            ]
        else:
            kernels.append({"kernel": kernel, "accuracy_level": 0, "median_ms": level0})
    return {
        "format": "speechmpq-kernels/1",
        "preset": "test",
        "machine": {"cpu": "test", "date": "today"},
        "linear": [{"k": 64, "n": 64, "per_block": 10, "kernels": kernels}],
    }


def test_the_map_takes_the_fastest_kernel_that_stores_the_layers_bits():
    table = _table(
        {
            "fp32": (1.0, 1.0),
            "int8-dynamic": (0.5, 0.5),
            "int8-dynamic-from4": (0.9, 0.9),
            "nbits8-block32": (0.8, 0.4),
            "nbits4-block32": (0.7, 0.3),
            "nbits4-block64": (0.6, 0.6),
            "nbits2-block32": (0.9, 0.9),
        }
    )
    layers = [
        {"name": "a", "container": 4, "k": 64, "n": 64},
        {"name": "b", "container": 8, "k": 64, "n": 64},
        {"name": "c", "container": 2, "k": 64, "n": 64},
        {"name": "d", "container": 4, "k": 32, "n": 8},
    ]
    level, kernels = choose(layers, table, None, None, 256)
    # level 4: a 0.3 + b 0.4 + c 0.9 = 1.6 beats level 0: 0.6 + 0.5 + 0.9 = 2.0
    assert level == 4
    assert {name: k["kernel"] for name, k in kernels.items()} == {
        "a": "nbits4-block32",
        "b": "nbits8-block32",
        "c": "nbits2-block32",
        "d": "nbits4-block32",
    }  # a shape not in the table: the table's fastest 4-bit kernel at that level
    assert kernels["a"]["block_size"] == 32 and kernels["d"]["predicted_ms"] is None
    level, kernels = choose(layers, table, None, 0, 256)  # the level given: the best at level 0
    assert (
        level == 0 and kernels["a"]["kernel"] == "nbits4-block64" and kernels["b"]["kernel"] == "int8-dynamic"
    )
    assert rules_from_table(table)["bits"] == {
        "2": "nbits2-block32",
        "4": "nbits4-block32",
        "8": "nbits8-block32",
    }
    level, kernels = choose(layers, None, None, None, 128)  # nothing measured: MatMulNBits at the block size
    assert level == 0 and {k["kernel"] for k in kernels.values()} == {
        "nbits4-block128",
        "nbits8-block128",
        "nbits2-block128",
    }


def test_built_in_rule_for_x86_comes_from_a_committed_table():
    for isa in (["avx2"], ["avx2", "avx512f", "avx512_vnni"]):  # without and with int8 dot products
        rule = default_rules("x86_64", isa)
        assert set(rule["bits"]) == {"2", "4", "8"} and "results/kernels_" in rule["source"]
        assert all(parse_kernel(kernel)[1] == int(bits) for bits, kernel in rule["bits"].items())
        assert all(flag in rule["isa"] for flag in isa if flag.endswith("vnni"))  # measured on such a CPU
    assert default_rules("riscv64", ["avx2"]) is None


def test_export_embeds_a_table_keeps_the_file_portable_and_the_runtime_chooses_with_it(tmp_path):
    """The file stores every linear layer weight-only at its bits, whatever the table says; the
    runtime picks the table's kernels on a CPU of the table's class (and guards saturation there),
    ignores the table on another class."""
    from speechmpq.runtime.cpu_facts import CpuFacts

    model_dir, plan = _quantized_dir(tmp_path, "per-channel")
    table = _table({})
    table["machine"] = {"arch": "x86_64", "isa": ["avx2"], "cpu": "hand-made", "date": "2026-12-07"}
    sizes = {
        (int(e["shape"][1]), int(e["shape"][0])) for e in plan["layers"].values() if e["kind"] == "linear"
    }
    fast = {"int8-dynamic": 0.1, "int8-dynamic-from4": 0.1, "nbits4-block16": 0.2, "nbits2-block16": 0.2,
            "nbits8-block16": 0.3, "nbits8-block32": 0.25}
    table["linear"] = [
        {"k": k, "n": n, "per_block": 1,
         "kernels": [{"kernel": kernel, "accuracy_level": 4, "median_ms": ms} for kernel, ms in fast.items()]}
        for k, n in sizes
    ]
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    out = tmp_path / "mapped.onnx"
    settings = ExportConfig(kernel_table=str(path), block_size=16, accuracy_level=4)
    summary = export_onnx(Source(model_dir=model_dir), out, settings, progress=False)
    by_layer = {r["layer"]: r for r in summary["layers"]}
    graph = onnx.load(str(out))
    metadata = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(metadata["speechmpq.kernel_table"])["linear"] == table["linear"]
    assert "speechmpq.kernels" not in metadata
    ops = collections.Counter(n.op_type for n in graph.graph.node)
    assert "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops  # portable: weight-only
    codes = load_file(str(model_dir / "model.safetensors"))
    avx2 = CpuFacts("x86_64", ("avx2",), "given")
    model = OnnxCTCModel(out, SessionConfig(threads=1, kernel_cache=False), cpu=avx2)
    assert model.kernels.source.startswith("the model's table") and model.accuracy_level == 4
    chosen = {x.layer: x.chosen for x in model.kernels.layers}
    for name, entry in plan["layers"].items():
        if entry["kind"] != "linear":
            continue
        container = by_layer[name]["container"]
        assert by_layer[name]["kernel"] == f"nbits{container}-block16"  # stored as is
        expected = {8: "int8-dynamic", 4: "int8-dynamic-from4", 2: "nbits2-block16"}[container]
        if container == 8 and np.abs(codes[f"{name}.weight_int"].astype(int)).max() > 64:
            expected = "nbits8-block32"  # int8-dynamic would saturate these codes on an AVX2 CPU
        assert chosen[name] == expected
        stored = next(t for t in graph.graph.initializer if t.name == f"{name}.weight_quantized")
        assert (
            stored.data_type
            == {8: onnx.TensorProto.INT8, 4: onnx.TensorProto.INT4, 2: onnx.TensorProto.INT2}[container]
        )  # the file keeps the layer's bits
    torch_model = load_model(model_dir)
    audio = torch.randn(1, 12345, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = torch_model(audio).logits.numpy()
    logits = model.logits(audio.numpy())
    # int8 activations in the int8-dynamic layers: within a few per cent of the float model
    assert np.abs(logits - reference).max() <= 0.05 * np.abs(reference).max()
    arm_cpu = CpuFacts("aarch64", (), "given")
    arm = OnnxCTCModel(out, SessionConfig(threads=1, kernel_cache=False), cpu=arm_cpu)
    assert not arm.kernels.source.startswith("the model's table")  # measured on another class of CPU


def test_kernels_command_writes_a_table_export_can_read(tmp_path, capsys):
    out = tmp_path / "kernels.json"
    assert (
        main(
            [
                "kernels",
                "--preset",
                "tiny",
                "--threads",
                "1",
                "--repetitions",
                "1",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    table = load_table(out)
    assert out.with_suffix(".md").is_file() and table["machine"]["onnxruntime"] == ort.__version__
    ids = {e["kernel"] for shape in table["linear"] for e in shape["kernels"]}
    assert {"fp32", "int8-dynamic", "int8-dynamic-from2", "nbits2-block32", "nbits8-block256"} <= ids
    assert all(
        e["median_ms"] > 0 and e["min_ms"] <= e["median_ms"] <= e["max_ms"]
        for shape in table["linear"]
        for e in shape["kernels"]
    )
    assert {c["input"] for c in table["conv"]} == {"window", "cached"}
    assert main(["kernels", "--preset", "tiny", "--out", str(tmp_path / "x.txt")]) == 1
    assert "must name a .json" in capsys.readouterr().err
