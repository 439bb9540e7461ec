"""The front-end cache: the exported graph's cached-conv-frames input against PyTorch and against
recomputing the conv stack, on layer-norm (exact) and group-norm (approximate) front ends."""

import numpy as np
import pytest
import torch
import transformers

from speechmpq.errors import ModelError
from speechmpq.export import ExportConfig, Source, export_onnx
from speechmpq.runtime import OnnxCTCModel, Recognizer, RecognizerConfig, StreamingConfig
from speechmpq.train.models import build_model, save_model


def _export(tmp_path, model, name, **config):
    model_dir = save_model(model, tmp_path / name)
    out = tmp_path / f"{name}.onnx"
    export_onnx(Source(model_dir=model_dir), out, ExportConfig(**config), progress=False)
    return out


@pytest.fixture(scope="module")
def layer_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cache")
    model = build_model("tiny", seed=5).eval()
    return model, _export(tmp, model, "layer")


def _group_model(seed=6):
    config = build_model("tiny").config.to_dict()
    config.update(feat_extract_norm="group", do_stable_layer_norm=False)
    torch.manual_seed(seed)
    return transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**config)).eval()


def test_cached_frames_plus_new_samples_give_the_whole_windows_logits(layer_model):
    """Conv frames of an earlier call + the new samples from the first missing frame on (with its
    receptive-field overlap) = the logits of the whole window, and of PyTorch."""
    model, path = layer_model
    onnx_model = OnnxCTCModel(path)
    stride, field = onnx_model.info.frame_stride_samples, onnx_model.info.receptive_field_samples
    samples = np.random.default_rng(0).normal(0, 0.3, 24000).astype(np.float32)
    whole = onnx_model.logits(samples)[0]
    with torch.no_grad():
        reference = model(torch.from_numpy(samples)[None]).logits[0].numpy()
    np.testing.assert_allclose(whole, reference, atol=1e-4)
    _, features = onnx_model.logits_cached(samples, np.zeros((0, onnx_model.feature_dim), np.float32))
    assert features.shape[0] == whole.shape[0] == (samples.size - field) // stride + 1
    for split in (1, 17, whole.shape[0] - 1):  # frames [0, split) cached, the rest computed again
        logits, new = onnx_model.logits_cached(samples[split * stride:], features[:split])
        assert new.shape[0] == whole.shape[0] - split
        np.testing.assert_allclose(new, features[split:], atol=1e-5)
        np.testing.assert_allclose(logits, whole, atol=1e-5)


def test_streaming_with_the_cache_equals_recomputing_on_a_layer_norm_front_end(layer_model):
    _, path = layer_model
    onnx_model = OnnxCTCModel(path)
    assert onnx_model.info.frontend_cache == "exact"
    calls = []
    original = onnx_model.logits_cached
    onnx_model.logits_cached = lambda values, cached: calls.append(values.size) or original(values, cached)
    rng = np.random.default_rng(1)
    samples = rng.normal(0, 0.3, 16000 * 6).astype(np.float32)
    outputs = {}
    for cache in ("off", "auto"):
        streaming = StreamingConfig(
            chunk_ms=320, left_context_ms=960, right_context_ms=320, frontend_cache=cache
        )
        rec = Recognizer(onnx_model, RecognizerConfig(streaming=streaming))
        assert rec.frontend_cache == (cache == "auto")
        stream, logits, position = rec.create_stream(), [], 0
        commit = stream._commit
        def record(done, ahead, last, final, logits=logits, commit=commit):
            logits.append(done.copy())
            commit(done, ahead, last, final)

        stream._commit = record
        while position < samples.size:
            size = int(rng.integers(1, 5000))
            stream.accept_waveform(samples[position : position + size], 16000)
            position += size
            rec.decode(stream)
        stream.input_finished()
        rec.decode(stream)
        outputs[cache] = (stream.result.text, np.concatenate(logits))
    assert outputs["off"][0] == outputs["auto"][0]
    np.testing.assert_allclose(outputs["off"][1], outputs["auto"][1], atol=1e-5)
    # after the first window every call runs the convs on the new 320 ms, one frame and the field
    assert len(calls) > 10 and max(calls[1:-1]) <= 16 * 320 + 320 + 400


def test_group_norm_front_ends_are_approximate_and_auto_follows_the_measurement(tmp_path):
    """Group norm on raw input: approximate, on under auto (measured harmless on a trained model,
    results/groupnorm_cache.md); with normalised input (not measured) off unless asked."""
    path = _export(tmp_path, _group_model(), "group")
    onnx_model = OnnxCTCModel(path)
    assert onnx_model.info.frontend_cache == "approximate" and not onnx_model.info.do_normalize
    streaming = {"chunk_ms": 320, "left_context_ms": 640, "right_context_ms": 320}
    auto = Recognizer(onnx_model, RecognizerConfig(streaming=StreamingConfig(**streaming)))
    assert auto.frontend_cache and "measured harmless" in auto.frontend_cache_note
    off = Recognizer(onnx_model,
                     RecognizerConfig(streaming=StreamingConfig(**streaming, frontend_cache="off")))
    assert not off.frontend_cache
    model_dir = save_model(_group_model(), tmp_path / "normalised", do_normalize=True)
    export_onnx(Source(model_dir=model_dir), tmp_path / "normalised.onnx", ExportConfig(), progress=False)
    normalised = OnnxCTCModel(tmp_path / "normalised.onnx")
    auto = Recognizer(normalised, RecognizerConfig(streaming=StreamingConfig(**streaming)))
    forced = Recognizer(normalised,
                        RecognizerConfig(streaming=StreamingConfig(**streaming, frontend_cache="on")))
    assert not auto.frontend_cache and forced.frontend_cache
    samples = np.random.default_rng(2).normal(0, 0.3, 16000 * 3).astype(np.float32)
    assert isinstance(forced.transcribe(samples, 16000), str)


def test_a_model_without_the_cache_still_streams_and_refuses_cache_on(tmp_path):
    path = _export(tmp_path, build_model("tiny", seed=7).eval(), "plain", frontend_cache=False)
    onnx_model = OnnxCTCModel(path)
    assert onnx_model.info.frontend_cache == "none" and onnx_model.feature_dim is None
    assert not Recognizer(onnx_model).frontend_cache
    with pytest.raises(ModelError, match="no front-end cache"):
        Recognizer(onnx_model, RecognizerConfig(streaming=StreamingConfig(frontend_cache="on")))


def _stream_logits(onnx_model, samples, normalization, cache):
    streaming = StreamingConfig(chunk_ms=320, left_context_ms=960, right_context_ms=320,
                                normalization=normalization, frontend_cache=cache)
    rec = Recognizer(onnx_model, RecognizerConfig(streaming=streaming))
    stream, logits = rec.create_stream(), []
    commit = stream._commit
    stream._commit = lambda done, ahead, last, final: logits.append(done.copy()) or commit(done, ahead, last,
                                                                                          final)
    for position in range(0, samples.size, 3000):
        stream.accept_waveform(samples[position: position + 3000], 16000)
        rec.decode(stream)
    stream.input_finished()
    rec.decode(stream)
    return rec, np.concatenate(logits)


@pytest.fixture(scope="module")
def norm_models(tmp_path_factory):
    """(front-end norm, do_normalize) -> exported tiny model with the cache."""
    tmp = tmp_path_factory.mktemp("norms")
    models = {}
    for norm in ("layer", "group"):
        for do_normalize in (False, True):
            model = build_model("tiny", seed=8).eval() if norm == "layer" else _group_model(8)
            model_dir = save_model(model, tmp / f"{norm}-{do_normalize}", do_normalize=do_normalize)
            out = tmp / f"{norm}-{do_normalize}.onnx"
            export_onnx(Source(model_dir=model_dir), out, ExportConfig(), progress=False)
            models[norm, do_normalize] = out
    return models


@pytest.mark.parametrize("norm", ["layer", "group"])
@pytest.mark.parametrize("do_normalize", [False, True])
@pytest.mark.parametrize("normalization", ["running", "window", "frozen"])
def test_the_cache_is_exact_exactly_where_it_says_so(norm_models, norm, do_normalize, normalization):
    """Every combination of front-end norm x do_normalize x normalisation mode: the metadata and the
    runtime's auto choice follow frontend_cache_exactness, and it is true: where it says exact,
    streaming with the cache gives the logits of recomputing; where it says approximate, it does not."""
    from speechmpq.onnx_metadata import frontend_cache_exactness

    onnx_model = OnnxCTCModel(norm_models[norm, do_normalize])
    exact, why = frontend_cache_exactness(norm, do_normalize, normalization)
    assert onnx_model.info.frontend_norm == norm and onnx_model.info.do_normalize == do_normalize
    assert onnx_model.info.frontend_cache == ("exact" if frontend_cache_exactness(norm, do_normalize)[0]
                                              else "approximate")
    # a level and an offset that change over time, so running and per-window statistics move
    rng = np.random.default_rng(3)
    length = 16000 * 5
    samples = (rng.normal(0, 1, length) * np.linspace(0.05, 0.8, length) + np.linspace(0, 0.3, length)
               ).astype(np.float32)
    auto, _ = _stream_logits(onnx_model, samples, normalization, "auto")
    measured_harmless = norm == "group" and not do_normalize  # results/groupnorm_cache.md
    assert auto.frontend_cache == (exact or measured_harmless) and why in auto.frontend_cache_note
    _, off = _stream_logits(onnx_model, samples, normalization, "off")
    _, on = _stream_logits(onnx_model, samples, normalization, "on")
    difference = np.abs(on - off).max()
    if exact:
        assert difference < 1e-4
    else:
        assert difference > 1e-3  # the approximation is real: the cache would change the logits
