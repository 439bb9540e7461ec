"""Model metadata parsing: speechmpq exports, plain exports from other tools, and broken metadata."""

import json

import pytest

from speechmpq.errors import ModelError
from speechmpq.onnx_metadata import ModelInfo
from speechmpq.vocab import VOCAB

GOOD = {"vocab": json.dumps({"<pad>": 0, "A": 1, "|": 2}), "sample_rate": "16000", "do_normalize": "false",
        "frame_stride_samples": "320", "receptive_field_samples": "345", "blank_id": "0",
        "speechmpq.format_version": "1", "speechmpq.chunk_ms": "640", "speechmpq.weights": "mpq"}


def test_speechmpq_metadata_parses_without_warnings():
    info = ModelInfo.from_metadata(GOOD)
    assert info.tokens == ["<pad>", "A", "|"] and info.do_normalize is False and not info.warnings
    assert info.receptive_field_samples == 345 and info.weights == "mpq" and info.accuracy_level == 0


def test_plain_onnx_runs_with_stated_defaults():
    info = ModelInfo.from_metadata({}, "other.onnx")
    assert info.tokens == list(VOCAB) and info.sample_rate == 16000 and info.do_normalize is True
    assert len(info.warnings) == 1 and "other.onnx: no speechmpq metadata" in info.warnings[0]


@pytest.mark.parametrize("change, message", [
    ({"speechmpq.format_version": "2"}, "newer than this runtime"),
    ({"vocab": "{not json"}, "invalid speechmpq metadata"),
    ({"vocab": json.dumps({"a": 0, "b": 5})}, "invalid speechmpq metadata"),
    ({"do_normalize": "maybe"}, "invalid speechmpq metadata"),
    ({"blank_id": "7"}, "invalid speechmpq metadata"),
    ({"sample_rate": "0"}, "invalid speechmpq metadata"),
])
def test_broken_metadata_is_refused_with_a_reason(change, message):
    with pytest.raises(ModelError, match=message):
        ModelInfo.from_metadata({**GOOD, **change}, "bad.onnx")


def test_bit_plan_that_does_not_match_the_graph_is_refused(tmp_path):
    from pathlib import Path

    import onnx

    from speechmpq.runtime import OnnxCTCModel

    source = Path(__file__).resolve().parents[2] / "models" / "demo-mpq.onnx"
    graph = onnx.load(str(source))
    for prop in graph.metadata_props:
        if prop.key == "speechmpq.bitplan":
            plan = json.loads(prop.value)
            layers = plan["layers"]
            layers["wav2vec2.encoder.layers.42.attention.q_proj"] = next(iter(layers.values()))
            prop.value = json.dumps(plan)
    onnx.save(graph, str(tmp_path / "bad.onnx"))
    with pytest.raises(ModelError, match="does not match the graph.*layers.42"):
        OnnxCTCModel(tmp_path / "bad.onnx")
    assert OnnxCTCModel(source).info.bitplan  # the real one passes


def test_files_from_before_the_front_end_norm_key_are_read_by_their_cache_value():
    """Old files wrote "exact" for every layer-norm front end, do_normalize or not: the runtime now
    reads the norm from that value and decides exactness itself (with do_normalize, not exact)."""
    from speechmpq.onnx_metadata import ModelInfo, frontend_cache_exactness

    old = {"speechmpq.format_version": "1", "speechmpq.frontend_cache": "exact", "do_normalize": "true"}
    info = ModelInfo.from_metadata(old)
    assert info.frontend_norm == "layer"
    assert not frontend_cache_exactness(info.frontend_norm, info.do_normalize, "running")[0]
    assert frontend_cache_exactness(info.frontend_norm, info.do_normalize, "frozen")[0]
    group = ModelInfo.from_metadata({**old, "speechmpq.frontend_cache": "approximate"})
    assert group.frontend_norm == "group"


def test_the_streaming_window_comes_from_the_flags_then_the_model_then_the_defaults():
    from types import SimpleNamespace

    from speechmpq.onnx_metadata import STREAMING_DEFAULTS_MS, streaming_window

    unset = SimpleNamespace(chunk_ms=None, left_context_ms=None, right_context_ms=None)
    assert streaming_window(SimpleNamespace(), unset) == STREAMING_DEFAULTS_MS
    family = SimpleNamespace(streaming_ms={"left": 5120, "right": 1280})
    assert streaming_window(family, unset) == {"chunk": STREAMING_DEFAULTS_MS["chunk"], "left": 5120,
                                               "right": 1280}
    given = SimpleNamespace(chunk_ms=320, left_context_ms=0, right_context_ms=None)
    assert streaming_window(family, given) == {"chunk": 320, "left": 0, "right": 1280}
