"""speechmpq export on tiny models: packing, graph structure vs the bit plan, parity with PyTorch,
ORT fusion, metadata, peers, external data, atomic writes and clear errors."""

import collections
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from speechmpq import bitplan
from speechmpq.bitplan import container_bits
from speechmpq.cli import main
from speechmpq.export import ExportConfig, Source, export_onnx
from speechmpq.packing import integer_initializer
from speechmpq.runtime import OnnxCTCModel, SessionConfig
from speechmpq.train.models import build_model, load_model, save_model
from speechmpq.train.qmodel import read_quantized, save_quantized
from speechmpq.train.supernet import SupernetConfig, current_bits, fix_bits, plan_layers, prepare_supernet

CONV = "wav2vec2.feature_extractor.conv_layers.1.conv"
LENGTHS = (5000, 12345, 21000)  # the trace uses 16000 samples
BITS_CYCLE = (2, 3, 4, 5, 8, 6, 7)


@pytest.mark.parametrize("bits", range(2, 9))
def test_packed_initializer_round_trips_and_is_dense(bits):
    rng = np.random.default_rng(bits)
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    codes = rng.integers(low, high + 1, size=(7, 5)).astype(np.int8)
    tensor = integer_initializer("w", codes, bits)
    assert np.array_equal(numpy_helper.to_array(tensor).astype(np.int8), codes)
    assert len(tensor.raw_data) == -(-codes.size * container_bits(bits) // 8)
    with pytest.raises(ValueError):
        integer_initializer("w", np.full((2, 2), high + 1, dtype=np.int16), bits)


def _quantized_dir(path, granularity, model_type=None):
    """A tiny quantized model directory whose layers use every bit width 2..8, a conv layer and the
    CTC head included (fixed-bit, unsearched)."""
    model = build_model("tiny", model_type, seed=3).eval()
    layers = {CONV: 4, "lm_head": 8, **SupernetConfig().layers}
    prepare_supernet(model, SupernetConfig(candidates=(2, 3, 4, 5, 6, 7, 8), granularity=granularity,
                                           layers=layers))
    bits = current_bits(model)
    searched = [name for name in bits if name not in (CONV, "lm_head")]
    bits.update({name: BITS_CYCLE[i % len(BITS_CYCLE)] for i, name in enumerate(searched)})
    fix_bits(model, bits)
    plan = bitplan.make_plan(plan_layers(model), "one-stage", [2, 3, 4, 5, 6, 7, 8], granularity, 4.0,
                             [3.5, 4.0])
    save_model(build_model("tiny", model_type, seed=3), path / "fp")  # side files (vocab, preprocessor)
    return save_quantized(model, plan, path / "q", source_dir=path / "fp"), plan


@pytest.fixture(scope="module", params=["per-tensor", "per-channel"])
def exported(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(f"export-{request.param}")
    model_dir, plan = _quantized_dir(path, request.param)
    summary = export_onnx(
        Source(model_dir=model_dir),
        path / "model.onnx",
        ExportConfig(block_size=16, kernel_table="none"),
        progress=False,
    )
    return {"dir": model_dir, "plan": plan, "onnx": path / "model.onnx", "summary": summary, "path": path}


def _initializers(model):
    return {t.name: t for t in model.graph.initializer}


def test_graph_stores_each_layer_at_its_planned_bits(exported):
    model = onnx.load(str(exported["onnx"]))
    plan, inits = exported["plan"], _initializers(model)
    dequantizers = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dequantizers) == len(plan["layers"])
    assert {e["bits"] for e in plan["layers"].values()} == set(range(2, 9))
    consumers = {i: n for n in model.graph.node for i in n.input}
    for node in dequantizers:
        meta = {p.key: p.value for p in node.metadata_props}
        entry = plan["layers"][meta["speechmpq.layer"]]
        assert int(meta["speechmpq.bits"]) == entry["bits"]
        stored = inits[node.input[0]]
        expected = {2: onnx.TensorProto.INT2, 4: onnx.TensorProto.INT4, 8: onnx.TensorProto.INT8}
        assert stored.data_type == expected[container_bits(entry["bits"])]
        codes = numpy_helper.to_array(stored).astype(np.int8)
        assert codes.min() >= -(2 ** (entry["bits"] - 1)) and codes.max() <= 2 ** (entry["bits"] - 1) - 1
        assert consumers[node.output[0]].op_type == ("MatMul" if entry["kind"] == "linear" else "Conv")
    assert model.opset_import[0].version == 25  # INT2 present
    assert sum(r["weight_bytes"] for r in exported["summary"]["layers"]) == sum(
        -(-np.prod(e["shape"]) * container_bits(e["bits"]) // 8) for e in plan["layers"].values())


def test_metadata_makes_the_file_self_describing(exported):
    model = onnx.load(str(exported["onnx"]))
    metadata = {p.key: p.value for p in model.metadata_props}
    for key in ("vocab", "sample_rate", "do_normalize", "frame_stride_samples", "receptive_field_samples",
                "speechmpq.bitplan", "speechmpq.format_version", "speechmpq.chunk_ms",
                "speechmpq.left_context_ms", "speechmpq.right_context_ms", "speechmpq.source_model_type",
                "speechmpq.version"):
        assert key in metadata, key
    assert json.loads(metadata["speechmpq.bitplan"]) == exported["plan"]
    assert json.loads(metadata["vocab"]) == json.loads((exported["dir"] / "vocab.json").read_text())
    assert metadata["frame_stride_samples"] == "320" and metadata["do_normalize"] in ("true", "false")
    info = OnnxCTCModel(exported["onnx"]).info
    assert info.bitplan == exported["plan"] and not info.warnings
    assert int(metadata["speechmpq.chunk_ms"]) % 20 == 0


def test_a_quantized_directory_is_read_once(exported, tmp_path, monkeypatch):
    import safetensors.numpy
    import safetensors.torch

    reads = []

    def counted(load):
        def load_file(path, *args, **kwargs):
            reads.append(str(path))
            return load(path, *args, **kwargs)

        return load_file

    for module in (safetensors.torch, safetensors.numpy):
        monkeypatch.setattr(module, "load_file", counted(module.load_file))
    export_onnx(Source(model_dir=exported["dir"]), tmp_path / "m.onnx",
                ExportConfig(block_size=16, kernel_table="none"), progress=False)
    assert reads == [str(exported["dir"] / "model.safetensors")]
    assert (tmp_path / "m.onnx").read_bytes() == exported["onnx"].read_bytes()
    quantized = read_quantized(exported["dir"])
    assert quantized.plan == exported["plan"] and not hasattr(quantized.model, "bitplan")
    modules = dict(quantized.model.named_modules())
    for name, entry in exported["plan"]["layers"].items():
        codes, scale = quantized.codes[name], quantized.scales[name]
        assert codes.dtype == np.int8 and list(codes.shape) == entry["shape"] and scale.dtype == np.float32
        weight = modules[name].weight.detach().numpy()  # the float model computes with codes x scale
        assert np.array_equal(weight, codes.astype(np.float32) * scale)


def test_unoptimised_ort_matches_pytorch_on_lengths_other_than_the_trace(exported):
    torch_model = load_model(exported["dir"])
    ort_model = OnnxCTCModel(exported["onnx"], SessionConfig(optimization="disabled"))
    for length in LENGTHS:
        audio = torch.randn(2, length, generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            reference = torch_model(audio).logits.numpy()
        logits = ort_model.logits(audio.numpy())
        assert logits.shape == reference.shape
        # float32 accumulation-order noise only: the stored integers x scales are the PyTorch weights
        assert np.abs(logits - reference).max() <= 1e-4 * np.abs(reference).max()


def test_ort_fuses_every_linear_into_matmulnbits(exported, tmp_path):
    optimized = tmp_path / "optimized.onnx"
    ort_model = OnnxCTCModel(exported["onnx"], SessionConfig(optimization="extended", accuracy_level=0,
                                                             optimized_model_path=str(optimized)))
    ops = collections.Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    linear = [e for e in exported["plan"]["layers"].values() if e["kind"] == "linear"]
    assert ops["MatMulNBits"] == len(linear)
    assert ops["DequantizeLinear"] == 1  # the conv layer's: ORT has no weight-only Conv kernel
    bits = sorted(a.i for n in onnx.load(str(optimized)).graph.node if n.op_type == "MatMulNBits"
                  for a in n.attribute if a.name == "bits")
    assert bits == sorted(container_bits(e["bits"]) for e in linear)
    torch_model = load_model(exported["dir"])
    audio = torch.randn(1, 12345, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = torch_model(audio).logits.numpy()
    assert np.abs(ort_model.logits(audio.numpy()) - reference).max() <= 1e-3 * np.abs(reference).max()


def test_size_accounting_adds_up(exported):
    size = exported["summary"]["size"]
    assert size["file_bytes"] == exported["onnx"].stat().st_size
    assert size["computed_bytes"] == pytest.approx(
        size["plan_weight_bytes"] + size["float_parameter_bytes"] + size["other_int8_bytes"], abs=1)
    assert size["plan_weight_bytes"] == pytest.approx(sum(
        e["bits"] * np.prod(e["shape"]) / 8 for e in exported["plan"]["layers"].values()), abs=1)
    assert size["scale_bytes"] > 0 and size["overhead_bytes"] >= size["scale_bytes"]


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm"])
def test_fp32_export_matches_pytorch(tmp_path, model_type):
    model_dir = save_model(build_model("tiny", model_type, seed=2), tmp_path / "fp")
    export_onnx(Source(model_dir=model_dir), tmp_path / "fp.onnx", ExportConfig(), progress=False)
    torch_model = load_model(model_dir)
    ort_model = OnnxCTCModel(tmp_path / "fp.onnx", SessionConfig(optimization="disabled"))
    assert ort_model.info.weights == "fp32" and ort_model.info.source_model_type == model_type
    for length in LENGTHS:
        audio = torch.randn(1, length, generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            reference = torch_model(audio).logits.numpy()
        assert np.abs(ort_model.logits(audio.numpy()) - reference).max() <= 1e-4 * np.abs(reference).max()


@pytest.mark.parametrize("peer, op", [("ort-int8-dynamic", "MatMulInteger"), ("ort-int4-rtn", "MatMulNBits")])
def test_peers_come_from_the_same_command(tmp_path, peer, op):
    model_dir = save_model(build_model("tiny", seed=2), tmp_path / "fp")
    out = tmp_path / f"{peer}.onnx"
    assert main(["export", str(model_dir), "--out", str(out), "--peer", peer, "--quiet"]) == 0
    model = onnx.load(str(out))
    assert op in {n.op_type for n in model.graph.node}
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["speechmpq.weights"] == peer and "vocab" in metadata
    ort_model = OnnxCTCModel(out)
    assert ort_model.logits(np.zeros(8000, np.float32)).shape[-1] == 32


def test_pattern_plan_and_preset_export(tmp_path, exported):
    out = tmp_path / "preset.onnx"
    plan_path = exported["dir"] / "bitplan.json"
    assert main(["export", "--preset", "tiny", "--plan-pattern", str(plan_path), "--out", str(out),
                 "--summary", str(tmp_path / "s.json"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    searched = {k: v for k, v in exported["plan"]["layers"].items() if k not in (CONV, "lm_head")}
    assert summary["average_bits"] == pytest.approx(bitplan.average_bits(searched), abs=1e-6)
    assert len([r for r in summary["layers"]]) == len(searched)
    assert main(["export", "--preset", "tiny", "--out", str(out), "--lm", "en.lm.npz", "--lm-weight", "0.4",
                 "--word-score", "1", "--lm-beam-size", "512", "--left-ms", "5120", "--quiet"]) == 0
    info = OnnxCTCModel(out).info
    assert (info.lm, info.lm_weight, info.word_score, info.left_context_ms) == ("en.lm.npz", 0.4, 1.0, 5120)
    assert info.lm_beam_size == 512
    assert main(["export", "--preset", "tiny", "--out", str(out), "--lm-beam-size", "64", "--quiet"]) == 1


def test_external_data_and_atomic_replacement(tmp_path, exported, monkeypatch):
    out = tmp_path / "m.onnx"
    export_onnx(
        Source(model_dir=exported["dir"]),
        out,
        ExportConfig(block_size=16, external_data_threshold=1000, kernel_table="none"),
        progress=False,
    )
    assert [f.stat().st_size > 0 for f in tmp_path.glob("m.onnx.*.data")] == [True]
    stub = onnx.load(str(out), load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in stub.graph.initializer)
    onnx.checker.check_model(str(out), full_check=True)
    reference = OnnxCTCModel(out).logits(np.ones(9000, np.float32))
    before = out.read_bytes()

    def broken(*args, **kwargs):
        raise onnx.checker.ValidationError("injected fault")

    monkeypatch.setattr(onnx.checker, "check_model", broken)
    assert main(["export", str(exported["dir"]), "--out", str(out), "--quiet"]) == 1
    assert out.read_bytes() == before and not list(tmp_path.glob(".*partial"))
    monkeypatch.undo()
    # the same exact MatMulNBits kernels as the reference (the built-in kernel map may pick
    # int8-dynamic, which quantizes activations, on a CPU with VNNI)
    export_onnx(Source(model_dir=exported["dir"]), out, ExportConfig(block_size=16, kernel_table="none"),
                progress=False)
    assert not list(tmp_path.glob("m.onnx.*.data"))  # the stale data file went with the old model
    assert np.allclose(OnnxCTCModel(out).logits(np.ones(9000, np.float32)), reference, atol=1e-3)


def test_bad_exports_fail_with_one_line(tmp_path, exported, capsys):
    cases = [
        ["export", str(exported["dir"]), "--out", str(tmp_path / "missing" / "m.onnx")],
        ["export", str(exported["dir"]), "--out", str(tmp_path / "m.onnx"), "--peer", "ort-int4-rtn"],
        ["export", str(exported["dir"]), "--out", str(tmp_path / "m.onnx"), "--opset", "21"],
        ["export", str(exported["dir"]), "--out", str(tmp_path / "m.txt")],
        ["export", "--preset", "nope", "--out", str(tmp_path / "m.onnx")],
        ["export", str(tmp_path), "--out", str(tmp_path / "m.onnx")],
        ["export", str(exported["dir"]), "--out", str(tmp_path / "m.onnx"), "--block-size", "48"],
        ["export", str(exported["dir"]), "--out", str(tmp_path / "m.onnx"), "--lm", "models/en.lm.npz"],
        ["export", str(exported["dir"]), "--out", str(tmp_path / "m.onnx"), "--lm-weight", "0.5"],
    ]
    for argv in cases:
        capsys.readouterr()
        assert main([*argv, "--quiet"]) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, (argv, err)


def test_int4_container_option_keeps_values_and_changes_only_storage(tmp_path, exported):
    out = tmp_path / "c4.onnx"
    assert (
        main(
            [
                "export",
                str(exported["dir"]),
                "--out",
                str(out),
                "--min-container",
                "4",
                "--kernel-table",
                "none",
                "--quiet",
            ]
        )
        == 0
    )
    model = onnx.load(str(out))
    inits = _initializers(model)
    for node in (n for n in model.graph.node if n.op_type == "DequantizeLinear"):
        bits = int({p.key: p.value for p in node.metadata_props}["speechmpq.bits"])
        expected = onnx.TensorProto.INT4 if bits <= 4 else onnx.TensorProto.INT8
        assert inits[node.input[0]].data_type == expected
    assert model.opset_import[0].version == 21
    audio = np.random.default_rng(0).standard_normal(11000).astype(np.float32)
    exact = SessionConfig(optimization="disabled")
    narrow = OnnxCTCModel(exported["onnx"], exact).logits(audio)
    assert np.array_equal(OnnxCTCModel(out, exact).logits(audio), narrow)


@pytest.mark.parametrize("normalize", [False, True])
def test_audio_bytes_graph_decodes_files_in_graph(tmp_path, normalize):
    import onnxruntime as ort
    import soundfile as sf
    from onnxruntime_extensions import get_library_path

    model_dir = save_model(build_model("tiny", seed=4), tmp_path / "fp", do_normalize=normalize)
    export_onnx(Source(model_dir=model_dir), tmp_path / "m.onnx", ExportConfig(audio_graph=True),
                progress=False)
    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    session = ort.InferenceSession(str(tmp_path / "m.audio.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    plain = OnnxCTCModel(tmp_path / "m.onnx")
    noise = np.random.default_rng(0).random(24000)
    audio = (0.3 * np.sin(np.arange(24000) * 0.05) * noise).astype(np.float32)
    for name, rate in (("a.wav", 16000), ("a.flac", 16000), ("b.wav", 22050)):
        sf.write(tmp_path / name, audio if rate == 16000 else audio[: int(len(audio) * rate / 16000)], rate)
        data = np.frombuffer((tmp_path / name).read_bytes(), np.uint8)[None]
        logits, ids = session.run(None, {"audio_bytes": data})
        assert ids.shape == logits.shape[:2] and np.array_equal(ids, logits.argmax(-1))
        if rate == 16000:
            samples = sf.read(tmp_path / name, dtype="float32")[0]
            assert np.allclose(logits, plain.logits(plain.prepare(samples)), atol=1e-4)
    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["speechmpq.input"] == "audio_bytes" and metadata["do_normalize"] == str(normalize).lower()


def test_others_int8_quantizes_every_weight_outside_the_plan(tmp_path, exported):
    out = tmp_path / "others.onnx"
    summary = export_onnx(
        Source(model_dir=exported["dir"]),
        out,
        ExportConfig(others="int8", kernel_table="none"),
        progress=False,
    )
    extra = [r for r in summary["layers"] if r["layer"] not in exported["plan"]["layers"]]
    kinds = {r["layer"].split(".")[-1] for r in extra}
    assert extra and all(r["bits"] == 8 and not r["searched"] for r in extra)
    assert {"conv", "projection"} <= kinds  # conv front end / positional conv, feature projection
    model = onnx.load(str(out))
    float_weights = [t for t in model.graph.initializer
                     if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 2
                     and not t.name.endswith("weight_scale")]
    assert not float_weights, [t.name for t in float_weights]
    assert summary["size"]["file_bytes"] < exported["summary"]["size"]["file_bytes"]
