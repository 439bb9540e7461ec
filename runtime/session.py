"""One onnxruntime session for a CTC model file, plus the model's metadata (numpy + ORT only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from speechmpq.audio import normalize_waveform
from speechmpq.errors import ModelError
from speechmpq.onnx_metadata import ModelInfo
from speechmpq.vocab import ctc_greedy_decode

OPTIMIZATION_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass
class SessionConfig:
    # intra-op threads; 0 lets onnxruntime choose (one per physical core)
    threads: int = 0
    # graph optimisation: disabled, basic, extended or all
    optimization: str = "all"
    # MatMulNBits accuracy level for fused DequantizeLinear->MatMul (4: int8 activations in the
    # kernel, 0: float32); None takes the model's recommendation from its metadata
    accuracy_level: int | None = None
    # onnxruntime's CPU memory arena: faster repeated allocation, but keeps its peak reserved
    arena: bool = True
    # write onnxruntime's JSON profile (per-node timings) with this file prefix; None: do not
    profile_prefix: str | None = None
    # write the optimised graph here (op-type checks); None: do not
    optimized_model_path: str | None = None

    def __post_init__(self):
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, not {self.threads}")
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(f"optimization must be one of {sorted(OPTIMIZATION_LEVELS)}")
        if self.accuracy_level is not None and self.accuracy_level not in range(5):
            raise ValueError(f"accuracy_level must be 0..4, not {self.accuracy_level}")


def _check_plan_against_graph(path: Path, plan: dict) -> None:
    """Every layer of the metadata's bit plan must have its packed weight in the graph
    (``NAME.weight_quantized``, as speechmpq export writes it). onnxruntime does not list
    initializers, so the names are read from the file's bytes in one pass (no onnx package)."""
    import mmap
    import re

    layers = plan.get("layers") if isinstance(plan, dict) else None
    if not isinstance(layers, dict):
        raise ModelError(f"{path}: invalid speechmpq metadata (the bit plan has no layers)")
    wanted, found = {name.encode("utf-8"): name for name in layers}, set()
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for match in re.finditer(rb"\.weight_quantized", data):  # names are length-prefixed strings
            before = data[max(0, match.start() - 1024): match.start()]
            found.update(name for key, name in wanted.items() if before.endswith(key))
    missing = [name for name in layers if name not in found]
    if missing:
        raise ModelError(f"{path}: the bit plan in its metadata does not match the graph: no quantized "
                         f"weight for {len(missing)} of its {len(layers)} layers (first: {missing[0]})")


class OnnxCTCModel:
    """``logits(samples)`` and offline ``transcribe(samples)`` for one exported model file."""

    def __init__(self, path: str | Path, config: SessionConfig | None = None):
        self.path = Path(path)
        self.config = config or SessionConfig()
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such model file")
        try:
            self.accuracy_level = 0 if self.config.accuracy_level is None else self.config.accuracy_level
            self.session = self._session()
            metadata = self.session.get_modelmeta().custom_metadata_map
            self.info = ModelInfo.from_metadata(metadata, str(self.path))
            if self.config.accuracy_level is None and self.info.accuracy_level != self.accuracy_level:
                self.accuracy_level = self.info.accuracy_level  # the model recommends another level
                self.session = self._session()
        except ModelError:
            raise
        except Exception as error:  # onnxruntime raises many unrelated types for unusable files
            first = str(error).strip().splitlines()[0][:300]
            raise ModelError(f"{self.path}: onnxruntime cannot load it ({first})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        cached = self.info.frontend_cache != "none"
        if not cached and len(inputs) == 2 and len(outputs) == 2 and len(inputs[1].shape) == 3:
            # a cache graph without its metadata (e.g. rewritten by another tool): usable, but
            # whether caching is exact is unknown, so streams recompute the front end by default
            self.info.frontend_cache, cached = "approximate", True
            self.info.warnings.append(f"{self.path}: a cached-conv-frames input but no frontend_cache "
                                      f"metadata; assuming the cache is approximate")
        if len(inputs) != 1 + cached or len(inputs[0].shape) != 2 or len(outputs) != 1 + cached:
            raise ModelError(f"{self.path}: expected one input of shape (batch, samples)" + (
                " and one of cached conv frames, and two outputs (its metadata says frontend_cache)"
                if cached else ""))
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.feature_dim = None
        if cached:
            self.cache_name, self.features_name = inputs[1].name, outputs[1].name
            self.feature_dim = inputs[1].shape[-1]
            if len(inputs[1].shape) != 3 or not isinstance(self.feature_dim, int):
                raise ModelError(f"{self.path}: the cached-frames input must be (batch, frames, channels)")
        if self.info.bitplan:
            _check_plan_against_graph(self.path, self.info.bitplan)
        vocab_size = outputs[0].shape[-1]
        if isinstance(vocab_size, int) and vocab_size != len(self.info.tokens):
            raise ModelError(f"{self.path}: the vocabulary has {len(self.info.tokens)} tokens but the "
                             f"model outputs {vocab_size}")

    def _session(self) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = OPTIMIZATION_LEVELS[self.config.optimization]
        options.intra_op_num_threads = self.config.threads
        options.log_severity_level = 3
        options.enable_cpu_mem_arena = self.config.arena
        if self.config.profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = self.config.profile_prefix
        if self.config.optimized_model_path:
            options.optimized_model_filepath = str(self.config.optimized_model_path)
        options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(self.accuracy_level))
        return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def prepare(self, samples: np.ndarray) -> np.ndarray:
        """float32 mono samples at the model's rate -> the model input (normalised if it expects it)."""
        samples = np.asarray(samples, dtype=np.float32)
        if self.info.do_normalize:
            samples = normalize_waveform(samples)
        return samples.astype(np.float32)

    def logits(self, values: np.ndarray) -> np.ndarray:
        """(samples,) or (batch, samples) model input -> (batch, frames, vocab) float32."""
        values = np.asarray(values, dtype=np.float32)
        if values.ndim == 1:
            values = values[None]
        feeds = {self.input_name: values}
        if self.feature_dim is not None:  # no cached frames: the plain model
            feeds[self.cache_name] = np.zeros((values.shape[0], 0, self.feature_dim), np.float32)
        return self.session.run([self.output_name], feeds)[0]

    def logits_cached(self, values: np.ndarray, cached: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One window from its new samples and the conv frames already computed for the window's
        start: (samples,) and (frames, channels) -> (logits (frames + new, vocab), new frames)."""
        if self.feature_dim is None:
            raise ModelError(f"{self.path}: this model has no front-end cache input (export it again)")
        feeds = {self.input_name: np.asarray(values, np.float32)[None],
                 self.cache_name: np.asarray(cached, np.float32)[None]}
        logits, features = self.session.run([self.output_name, self.features_name], feeds)
        return logits[0], features[0]

    def transcribe(self, samples: np.ndarray) -> str:
        """Greedy CTC transcript of one whole utterance (offline)."""
        if samples.shape[-1] < self.info.receptive_field_samples:
            return ""
        ids = self.logits(self.prepare(samples))[0].argmax(-1)
        return ctc_greedy_decode(ids, self.info.tokens, self.info.blank_id)

