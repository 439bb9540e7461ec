"""The .onnx metadata contract: everything a device needs besides the graph, written and read here.

Plain keys follow what other CTC tooling reads (``vocab``, ``sample_rate``, ``do_normalize``, ...);
speechmpq's own keys carry the ``speechmpq.`` prefix. All values are strings (ONNX stores strings).
Writer: ``model_metadata`` + ``set_metadata`` (called by export). Reader: ``ModelInfo.from_metadata``
(called by the runtime), which validates every key, the embedded bit plan included, and refuses a
``format_version`` newer than ``FORMAT_VERSION``.

Files from other tools (no speechmpq metadata) still run: the missing keys take wav2vec2's values
and ``ModelInfo.warnings`` says which were assumed. Pure Python: no onnx, no onnxruntime.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from speechmpq import __version__, bitplan
from speechmpq.audio import SAMPLE_RATE
from speechmpq.errors import ModelError
from speechmpq.vocab import BLANK_ID, VOCAB, WORD_DELIMITER

FORMAT_VERSION = 1  # newest export metadata layout this runtime understands (exports write it)
# Recommended streaming window (ms): exports write these unless told otherwise, files without them
# get them. Right look-ahead chosen by measurement: results/streaming_sweep.md.
STREAMING_DEFAULTS_MS = {"chunk": 640, "left": 2560, "right": 960}

FRONTEND_CACHE = ("none", "exact", "approximate")
FRONTEND_NORMS = ("layer", "group")  # feat_extract_norm of the conv front end
# how a stream normalises the input of a do_normalize model (runtime/stream.py): statistics of every
# sample so far, of the window alone, or of the first window, then fixed
NORMALIZATIONS = ("running", "window", "frozen")


def frontend_cache_default(frontend_norm: str, do_normalize: bool,
                           normalization: str = "running") -> tuple[bool, str]:
    """Whether ``frontend_cache="auto"`` turns the cache on, and why: where it is exact, and where it
    is approximate but was measured harmless: a group-norm front end on raw input (a trained demo-gn
    model streamed both ways, results/groupnorm_cache.md: WER +0.19 points on dev, p 0.64, chosen on
    dev; +0.25 on test, p 0.55). Approximations not measured (input normalised with running or
    per-window statistics, alone or on top of group norm) leave it off."""
    exact, why = frontend_cache_exactness(frontend_norm, do_normalize, normalization)
    if exact:
        return True, f"exact: {why}"
    if frontend_norm == "group" and not do_normalize:
        return True, (f"approximate, measured harmless on a trained group-norm model "
                      f"(results/groupnorm_cache.md): {why}")
    return False, f"approximate: {why}"


def frontend_cache_exactness(frontend_norm: str, do_normalize: bool,
                             normalization: str = "running") -> tuple[bool, str]:
    """Whether streaming with cached conv frames gives the logits recomputing every window gives,
    and why (one phrase). The cache reuses frames computed for an earlier window; they are the frames
    the current window would compute only if nothing they depend on differs between the two windows:
    the samples under them (always the same), the input normalisation, and the front end's own
    normalisation."""
    if frontend_norm != "layer":
        return False, ("the conv front end normalises each channel over the whole window (group norm): "
                       "cached frames were normalised over an earlier window")
    if not do_normalize:
        return True, "per-frame layer norm and raw input: a frame depends only on the samples under it"
    if normalization == "frozen":
        return True, ("input normalised with the first window's statistics, then fixed: every frame "
                      "sees the same normalisation")
    if normalization == "window":
        return False, ("the input is normalised by each window's own statistics: cached frames were "
                       "computed under an earlier window's")
    return False, ("the input is normalised with running statistics: cached frames were computed under "
                   "older ones (--normalization frozen makes the cache exact)")
_DEFAULTS = {"sample_rate": str(SAMPLE_RATE), "do_normalize": "true", "frame_stride_samples": "320",
             "receptive_field_samples": "400", "blank_id": str(BLANK_ID), "word_delimiter": WORD_DELIMITER,
             "speechmpq.chunk_ms": str(STREAMING_DEFAULTS_MS["chunk"]),
             "speechmpq.left_context_ms": str(STREAMING_DEFAULTS_MS["left"]),
             "speechmpq.right_context_ms": str(STREAMING_DEFAULTS_MS["right"]),
             "speechmpq.accuracy_level": "0"}  # fmt: skip


@dataclass
class ModelInfo:
    tokens: list[str]  # id -> token
    sample_rate: int
    do_normalize: bool  # per-utterance zero mean, unit variance before the model
    frame_stride_samples: int
    receptive_field_samples: int
    blank_id: int
    word_delimiter: str
    chunk_ms: int  # recommended streaming chunk and contexts
    left_context_ms: int
    right_context_ms: int
    accuracy_level: int  # recommended session.qdq_matmulnbits_accuracy_level
    weights: str  # fp32, mpq, uniform-N, ort-int8-dynamic, ort-int4-rtn, or "unknown"
    source_model_type: str
    bitplan: dict | None
    format_version: int | None
    # "none": input_values -> logits; "exact" / "approximate": the graph also takes cached conv
    # frames and returns new ones; exact with the runtime's default (running) normalisation
    # (frontend_cache_exactness), the runtime decides for its own mode from frontend_norm
    frontend_cache: str = "none"
    # the conv front end's normalisation: "layer" (per frame), "group" (per channel over the window),
    # or "unknown" (a file from before this key: read from frontend_cache)
    frontend_norm: str = "unknown"
    # the LM the model's decoding was tuned with: a file name looked up beside the model, and the
    # weight and word score chosen on dev with it (None: none recommended)
    lm: str | None = None
    lm_weight: float | None = None
    word_score: float | None = None
    lm_beam_size: int | None = None
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], path: str = "model") -> ModelInfo:
        warnings = []
        version = metadata.get("speechmpq.format_version")
        if version is None:
            warnings.append(f"{path}: no speechmpq metadata; assuming " + ", ".join(
                f"{k}={v}" for k, v in _DEFAULTS.items() if k not in metadata) + " and the LibriSpeech "
                "character vocabulary" * ("vocab" not in metadata))
        try:
            if version is not None and int(version) > FORMAT_VERSION:
                raise ModelError(f"{path}: metadata format_version {version} is newer than this runtime "
                                 f"understands ({FORMAT_VERSION}); upgrade speechmpq")
            values = {**_DEFAULTS, **metadata}
            tokens = list(VOCAB)
            if "vocab" in metadata:
                vocab = json.loads(metadata["vocab"])
                tokens = [t for t, _ in sorted(vocab.items(), key=lambda item: int(item[1]))]
                if sorted(int(i) for i in vocab.values()) != list(range(len(vocab))):
                    raise ValueError("vocab ids are not 0..N-1")
            plan = bitplan.loads(metadata["speechmpq.bitplan"]) if "speechmpq.bitplan" in metadata else None
            info = cls(
                tokens=tokens, sample_rate=int(values["sample_rate"]),
                do_normalize=_boolean(values["do_normalize"]),
                frame_stride_samples=int(values["frame_stride_samples"]),
                receptive_field_samples=int(values["receptive_field_samples"]),
                blank_id=int(values["blank_id"]), word_delimiter=values["word_delimiter"],
                chunk_ms=int(values["speechmpq.chunk_ms"]),
                left_context_ms=int(values["speechmpq.left_context_ms"]),
                right_context_ms=int(values["speechmpq.right_context_ms"]),
                accuracy_level=int(values["speechmpq.accuracy_level"]),
                weights=metadata.get("speechmpq.weights", "unknown"),
                source_model_type=metadata.get("speechmpq.source_model_type", "unknown"),
                bitplan=plan, format_version=int(version) if version is not None else None,
                frontend_cache=metadata.get("speechmpq.frontend_cache", "none"), warnings=warnings,
                frontend_norm=metadata.get("speechmpq.frontend_norm") or {
                    "exact": "layer", "approximate": "group"}.get(
                    metadata.get("speechmpq.frontend_cache", "none"), "unknown"),
                lm=metadata.get("speechmpq.lm") or None,
                lm_weight=_number(metadata.get("speechmpq.lm_weight")),
                word_score=_number(metadata.get("speechmpq.word_score")),
                lm_beam_size=_integer(metadata.get("speechmpq.lm_beam_size")),
            )  # fmt: skip
        except (ValueError, TypeError, AttributeError) as error:  # BitPlanError is a ValueError
            raise ModelError(f"{path}: invalid speechmpq metadata ({error})") from None
        if info.lm is not None and Path(info.lm).name != info.lm:
            raise ModelError(f"{path}: invalid speechmpq metadata (lm {info.lm!r} is not a file name)")
        if info.frontend_cache not in FRONTEND_CACHE:
            raise ModelError(f"{path}: invalid speechmpq metadata (frontend_cache {info.frontend_cache!r})")
        if info.sample_rate <= 0 or info.frame_stride_samples <= 0 or not 0 <= info.blank_id < len(tokens):
            raise ModelError(f"{path}: invalid speechmpq metadata (sample rate, frame stride or blank id)")
        return info


def _number(text: str | None) -> float | None:
    return None if text is None else float(text)


def _integer(text: str | None) -> int | None:
    if text is None:
        return None
    if int(text) < 1:
        raise ValueError(f"lm_beam_size must be >= 1, not {text}")
    return int(text)


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"do_normalize must be true or false, not {text!r}")
    return text.lower() in ("true", "1")


def conv_geometry(config) -> tuple[int, int]:
    """(frame stride, receptive field) of the conv front end in samples."""
    stride, field = 1, 1
    for kernel, step in zip(config.conv_kernel, config.conv_stride, strict=True):
        field += (kernel - 1) * stride
        stride *= step
    return stride, field


def _round_to_frames(milliseconds: int, frame_ms: float) -> int:
    return int(round(max(1, math.ceil(milliseconds / frame_ms - 1e-9)) * frame_ms))


def streaming_window(config, cfg) -> dict[str, int]:
    """The streaming window an export recommends (ms): the export settings where given, else the model
    config's ``streaming_ms`` (a model family's window chosen on dev), else ``STREAMING_DEFAULTS_MS``."""
    own = {**STREAMING_DEFAULTS_MS, **(getattr(config, "streaming_ms", None) or {})}
    given = {"chunk": getattr(cfg, "chunk_ms", None), "left": getattr(cfg, "left_context_ms", None),
             "right": getattr(cfg, "right_context_ms", None)}
    return {key: own[key] if given[key] is None else given[key] for key in own}


def model_metadata(config, vocab: list[str], do_normalize: bool, cfg, weights: str,
                   plan: dict | None = None, extra: dict | None = None) -> dict[str, str]:
    """Metadata for a model with Hugging Face ``config``; ``weights`` names how weights are stored.

    ``cfg``: the export settings (``speechmpq.export.ExportConfig`` or anything with its
    ``chunk_ms``, ``left_context_ms``, ``right_context_ms`` and ``frontend_cache``)."""
    stride, field = conv_geometry(config)
    frame_ms = stride / SAMPLE_RATE * 1000
    window = streaming_window(config, cfg)
    metadata = {
        "vocab": json.dumps({token: index for index, token in enumerate(vocab)}),
        "sample_rate": str(SAMPLE_RATE),
        "do_normalize": "true" if do_normalize else "false",
        "frame_stride_samples": str(stride),
        "receptive_field_samples": str(field),
        "blank_id": str(config.pad_token_id),
        "word_delimiter": WORD_DELIMITER,
        "speechmpq.format_version": str(FORMAT_VERSION),
        "speechmpq.version": __version__,
        "speechmpq.source_model_type": config.model_type,
        "speechmpq.weights": weights,
        "speechmpq.chunk_ms": str(_round_to_frames(window["chunk"], frame_ms)),
        "speechmpq.left_context_ms": str(_round_to_frames(window["left"], frame_ms) if window["left"] else 0),
        "speechmpq.right_context_ms": str(_round_to_frames(window["right"], frame_ms)
                                          if window["right"] else 0),
    }  # fmt: skip
    if cfg.frontend_cache:
        # the graph takes cached conv frames (runtime/stream.py); whether caching is exact depends on
        # the front end's norm, do_normalize and the runtime's normalisation mode: the value here is
        # for the runtime's default mode, the runtime decides for its own from frontend_norm
        exact, _ = frontend_cache_exactness(config.feat_extract_norm, do_normalize)
        metadata["speechmpq.frontend_cache"] = "exact" if exact else "approximate"
        metadata["speechmpq.frontend_norm"] = config.feat_extract_norm
    if getattr(cfg, "lm", None):  # the decoding the model was tuned with (ExportConfig.lm)
        metadata["speechmpq.lm"] = cfg.lm
        metadata.update({f"speechmpq.{key}": str(getattr(cfg, key))
                         for key in ("lm_weight", "word_score", "lm_beam_size")
                         if getattr(cfg, key, None) is not None})
    if plan is not None:
        metadata["speechmpq.bitplan"] = json.dumps(plan, sort_keys=True)
    metadata.update({key: str(value) for key, value in (extra or {}).items()})
    return metadata


def set_metadata(model, metadata: dict[str, str]) -> None:
    """Write ``metadata`` into an ``onnx.ModelProto``'s metadata_props (replacing equal keys)."""
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    for prop in kept:
        model.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name, model.producer_version = "speechmpq", __version__


def get_metadata(model) -> dict[str, str]:
    """An ``onnx.ModelProto``'s metadata_props as a dict."""
    return {prop.key: prop.value for prop in model.metadata_props}
