"""The exported model's ``metadata_props``: everything a device needs besides the graph.

Plain keys follow what other CTC tooling reads (``vocab``, ``sample_rate``, ``do_normalize``, ...);
speechmpq's own keys carry the ``speechmpq.`` prefix. All values are strings (ONNX stores strings).
The runtime parses them in ``speechmpq.runtime.model_info``.
"""

from __future__ import annotations

import json
import math

import onnx

from speechmpq import __version__
from speechmpq.export.config import ExportConfig
from speechmpq.runtime.model_info import FORMAT_VERSION  # the runtime refuses newer layouts


def conv_geometry(config) -> tuple[int, int]:
    """(frame stride, receptive field) of the conv front end in samples."""
    stride, field = 1, 1
    for kernel, step in zip(config.conv_kernel, config.conv_stride, strict=True):
        field += (kernel - 1) * stride
        stride *= step
    return stride, field


def _round_to_frames(milliseconds: int, frame_ms: float) -> int:
    return int(round(max(1, math.ceil(milliseconds / frame_ms - 1e-9)) * frame_ms))


def model_metadata(config, vocab: list[str], do_normalize: bool, cfg: ExportConfig, weights: str,
                   plan: dict | None = None, extra: dict | None = None) -> dict[str, str]:
    """Metadata for a model with Hugging Face ``config``; ``weights`` names how weights are stored."""
    stride, field = conv_geometry(config)
    frame_ms = stride / 16000 * 1000
    metadata = {
        "vocab": json.dumps({token: index for index, token in enumerate(vocab)}),
        "sample_rate": "16000",
        "do_normalize": "true" if do_normalize else "false",
        "frame_stride_samples": str(stride),
        "receptive_field_samples": str(field),
        "blank_id": str(config.pad_token_id),
        "word_delimiter": "|",
        "speechmpq.format_version": str(FORMAT_VERSION),
        "speechmpq.version": __version__,
        "speechmpq.source_model_type": config.model_type,
        "speechmpq.weights": weights,
        "speechmpq.chunk_ms": str(_round_to_frames(cfg.chunk_ms, frame_ms)),
        "speechmpq.left_context_ms": str(_round_to_frames(cfg.left_context_ms, frame_ms)
                                         if cfg.left_context_ms else 0),
        "speechmpq.right_context_ms": str(_round_to_frames(cfg.right_context_ms, frame_ms)
                                          if cfg.right_context_ms else 0),
    }  # fmt: skip
    if cfg.frontend_cache:
        # the graph takes cached conv frames (runtime/stream.py); caching is exact only when every
        # conv layer normalises per frame (layer norm), not over the window (group norm)
        metadata["speechmpq.frontend_cache"] = (
            "exact" if config.feat_extract_norm == "layer" else "approximate"
        )
    if plan is not None:
        metadata["speechmpq.bitplan"] = json.dumps(plan, sort_keys=True)
    metadata.update({key: str(value) for key, value in (extra or {}).items()})
    return metadata


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    for prop in kept:
        model.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name, model.producer_version = "speechmpq", __version__


def get_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}
