"""Optional end-to-end graph: encoded audio file bytes in, logits and greedy token ids out.

    audio_bytes (uint8, 1 x bytes: a whole wav/flac/mp3 file)
      -> AudioDecoder (onnxruntime-extensions; decodes, mixes to mono, resamples to 16 kHz)
      -> [per-utterance normalisation, if the model expects it]
      -> the model -> logits (1, frames, vocab) -> ArgMax -> token_ids (1, frames)

A device app feeds file bytes and gets ids to map through the ``vocab`` metadata; no audio library
needed. The price: the session must register the onnxruntime-extensions custom-op library
(``SessionOptions.register_custom_ops_library(onnxruntime_extensions.get_library_path())``), and it
is an offline (whole-file) graph; streaming uses the plain model.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

EXTENSIONS_DOMAIN = "ai.onnx.contrib"


def audio_bytes_graph(model: onnx.ModelProto, sample_rate: int, do_normalize: bool) -> onnx.ModelProto:
    """Prefix ``model`` (input ``input_values``) with in-graph decoding; append greedy ids."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    nodes = [helper.make_node("AudioDecoder", ["audio_bytes"], ["pcm"], domain=EXTENSIONS_DOMAIN,
                              downsampling_rate=sample_rate, stereo_to_mono=1)]
    initializers, output = [], "pcm"
    if do_normalize:  # (x - mean) / sqrt(var + 1e-7), over the samples axis, as the feature extractor
        initializers = [numpy_helper.from_array(np.array(1e-7, np.float32), "norm_eps")]
        if opset >= 18:  # ReduceMean takes its axes as an input from opset 18 on
            initializers.append(numpy_helper.from_array(np.array([1], np.int64), "norm_axes"))
            mean_of = lambda x, y: helper.make_node("ReduceMean", [x, "norm_axes"], [y], keepdims=1)  # noqa: E731
        else:
            mean_of = lambda x, y: helper.make_node("ReduceMean", [x], [y], axes=[1], keepdims=1)  # noqa: E731
        nodes += [
            mean_of("pcm", "norm_mean"),
            helper.make_node("Sub", ["pcm", "norm_mean"], ["norm_centered"]),
            helper.make_node("Mul", ["norm_centered", "norm_centered"], ["norm_squared"]),
            mean_of("norm_squared", "norm_var"),
            helper.make_node("Add", ["norm_var", "norm_eps"], ["norm_var_eps"]),
            helper.make_node("Sqrt", ["norm_var_eps"], ["norm_std"]),
            helper.make_node("Div", ["norm_centered", "norm_std"], ["pcm_normalized"]),
        ]  # fmt: skip
        output = "pcm_normalized"
    outputs, io_map = (
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, "samples"])],
        [(output, "input_values")],
    )
    cache = next((i for i in model.graph.input if i.name == "cached_features"), None)
    if cache is not None:  # a front-end-cache graph: offline here, so no cached frames
        channels = cache.type.tensor_type.shape.dim[2].dim_value
        nodes.append(
            helper.make_node(
                "Constant",
                [],
                ["no_cached_features"],
                value=numpy_helper.from_array(np.zeros((1, 0, channels), np.float32)),
            )
        )
        outputs.append(
            helper.make_tensor_value_info("no_cached_features", TensorProto.FLOAT, [1, 0, channels])
        )
        io_map.append(("no_cached_features", "cached_features"))
    decode = helper.make_graph(
        nodes, "decode_audio",
        [helper.make_tensor_value_info("audio_bytes", TensorProto.UINT8, [1, "bytes"])],
        outputs,
        initializers,
    )
    prefix = helper.make_model(
        decode, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(EXTENSIONS_DOMAIN, 1)]
    )
    prefix.ir_version = model.ir_version
    merged = compose.merge_models(prefix, model, io_map=io_map)
    kept = [o for o in merged.graph.output if o.name != "features"]
    del merged.graph.output[:]
    merged.graph.output.extend(kept)
    merged.graph.node.append(helper.make_node("ArgMax", ["logits"], ["token_ids"], axis=-1, keepdims=0))
    merged.graph.output.append(helper.make_tensor_value_info("token_ids", TensorProto.INT64, [1, "frames"]))
    del merged.metadata_props[:]
    merged.metadata_props.extend(p for p in model.metadata_props if p.key != "speechmpq.frontend_cache")
    merged.metadata_props.add(key="speechmpq.input", value="audio_bytes")
    merged.metadata_props.add(key="speechmpq.requires", value="onnxruntime-extensions")
    return merged
