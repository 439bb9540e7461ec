"""Kernels chosen at load for the CPU the model loads on (runtime/kernel_choice.py), fed fake CPU
facts: which kernel each layer gets per CPU class, the saturation guard, the modes, the rewrite's
numerics, the cache, and the fallbacks."""

import builtins
import collections
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
from test_export import _quantized_dir  # noqa: E402

from speechmpq.cli import main  # noqa: E402
from speechmpq.export import ExportConfig, Source, export_onnx  # noqa: E402
from speechmpq.runtime import OnnxCTCModel, SessionConfig  # noqa: E402
from speechmpq.runtime.cpu_facts import CpuFacts, detect_cpu  # noqa: E402
from speechmpq.runtime.kernel_choice import prepare  # noqa: E402

VNNI = CpuFacts("x86_64", ("avx2", "avx512_vnni", "avx512f"), "given")
AVX2 = CpuFacts("x86_64", ("avx2",), "given")
ARM = CpuFacts("aarch64", ("asimddp",), "given")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A tiny model with 2..8-bit per-channel layers (8-bit ones with full-range codes), exported at
    accuracy level 4 (int8 activations accepted) and at the default level 0."""
    path = tmp_path_factory.mktemp("kernel-choice")
    model_dir, plan = _quantized_dir(path, "per-channel")
    files = {}
    for level in (0, 4):
        files[level] = path / f"level{level}.onnx"
        settings = ExportConfig(block_size=16, accuracy_level=level)
        export_onnx(Source(model_dir=model_dir), files[level], settings, progress=False)
    return files


def _load(path, cpu, **settings):
    return OnnxCTCModel(path, SessionConfig(threads=1, **settings), cpu=cpu)


def _by_layer(model):
    return {x.layer: x for x in model.kernels.layers}


def test_each_cpu_class_gets_its_own_kernels_and_full_range_8_bit_avoids_int8_on_avx2(mixed):
    vnni, avx2, arm = (_by_layer(_load(mixed[4], cpu)) for cpu in (VNNI, AVX2, ARM))
    assert vnni.keys() == avx2.keys() == arm.keys() and len(vnni) >= 6
    wide = [name for name, x in vnni.items() if x.bits == 8 and x.max_code > 64]
    narrow = [name for name, x in vnni.items() if x.bits == 4]
    assert wide and narrow  # the fixture has both kinds
    for name in wide:
        assert vnni[name].chosen == "int8-dynamic"  # VNNI: no int16 overflow
        assert avx2[name].chosen.startswith("nbits8") and "overflow" in avx2[name].why
        assert arm[name].chosen == arm[name].stored  # nothing measured for aarch64: as stored
    for name in narrow:  # 4-bit codes cannot overflow: int8-dynamic on both x86 classes
        assert vnni[name].chosen == avx2[name].chosen == "int8-dynamic-from4"


def test_float_activations_are_kept_at_accuracy_level_0(mixed):
    model = _load(mixed[0], VNNI)
    assert model.accuracy_level == 0
    assert all(not x.chosen.startswith("int8") for x in model.kernels.layers)
    assert "float activations" in model.kernels.layers[0].why


def test_modes_and_their_numerics(mixed):
    audio = np.random.default_rng(4).standard_normal(12000).astype(np.float32) * 0.1
    stored = _load(mixed[4], AVX2, kernels="nbits", accuracy_level=0)
    assert stored.kernels.summary().startswith("kernels (nbits): every layer as stored")
    reference = stored.logits(audio)
    floated = _load(mixed[4], AVX2, kernels="float", accuracy_level=0)
    assert {x.chosen for x in floated.kernels.layers} == {"fp32"}
    assert np.abs(floated.logits(audio) - reference).max() < 1e-4  # codes x scales, the same product
    forced = _load(mixed[4], AVX2, kernels="int8")
    chosen = collections.Counter(x.chosen.split("-from")[0] for x in forced.kernels.layers)
    assert chosen["int8-dynamic"] and any(x.chosen.startswith("nbits8") for x in forced.kernels.layers)
    assert np.abs(forced.logits(audio) - reference).max() <= 0.05 * np.abs(reference).max()
    auto = _load(mixed[4], VNNI)
    assert np.abs(auto.logits(audio) - reference).max() <= 0.05 * np.abs(reference).max()


def test_the_rewritten_model_is_cached_and_reloads_without_the_rewrite(mixed, tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHMPQ_CACHE", str(tmp_path))
    first = prepare(mixed[4], VNNI)
    assert first.source.startswith(str(tmp_path)) and not first.cached
    again = prepare(mixed[4], VNNI)
    assert again.cached and again.source == first.source
    graph = onnx.load(first.source)
    ops = collections.Counter(n.op_type for n in graph.graph.node)
    assert ops["MatMulInteger"] == sum(x.chosen.startswith("int8") for x in first.choice.layers)
    uncached = prepare(mixed[4], VNNI, use_cache=False)
    assert isinstance(uncached.source, bytes)


def test_without_the_onnx_package_layers_run_as_stored(mixed, monkeypatch):
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("blocked")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    prepared = prepare(mixed[4], VNNI, use_cache=False)
    assert prepared.source == str(mixed[4]) and "onnx package" in prepared.choice.note


def test_detected_cpu_matches_numpy_dispatch():
    from speechmpq.runtime.cpu_facts import _numpy_features

    cpu, features = detect_cpu(), _numpy_features()
    assert ("avx2" in cpu.isa) == bool(features.get("AVX2"))
    assert ("avx512_vnni" in cpu.isa) == bool(features.get("AVX512VNNI"))


def test_info_prints_the_choice_per_layer_and_bad_modes_fail(mixed, capsys):
    assert main(["info", str(mixed[4]), "--kernels", "float"]) == 0
    out = capsys.readouterr().out
    assert "kernels (float" in out and "runs as" in out and "fp32" in out
    with pytest.raises(SystemExit):
        main(["info", str(mixed[4]), "--kernels", "nope"])
    with pytest.raises(ValueError, match="kernels must be one of"):
        SessionConfig(kernels="nope")
