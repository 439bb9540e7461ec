"""One onnxruntime session for a CTC model file, plus the model's metadata (numpy + ORT only)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from speechmpq.audio import normalize_waveform
from speechmpq.errors import ModelError
from speechmpq.onnx_metadata import ModelInfo
from speechmpq.runtime.cpu_facts import CpuFacts, detect_cpu
from speechmpq.runtime.kernel_choice import KERNEL_MODES, KernelChoice, prepare
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
    # how each quantized linear layer runs on this CPU (runtime/kernel_choice.py): "auto" the fastest
    # exact kernel here, "int8" int8-dynamic wherever exact here, "nbits" as stored, "float" fp32
    kernels: str = "auto"
    # a kernel table (speechmpq kernels) to choose with instead of the model's or the built-in one
    kernel_table: str | None = None
    # keep rewritten models in the kernel cache (runtime/kernel_choice.kernel_cache) for later loads
    kernel_cache: bool = True

    def __post_init__(self):
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, not {self.threads}")
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(f"optimization must be one of {sorted(OPTIMIZATION_LEVELS)}")
        if self.accuracy_level is not None and self.accuracy_level not in range(5):
            raise ValueError(f"accuracy_level must be 0..4, not {self.accuracy_level}")
        if self.kernels not in KERNEL_MODES:
            raise ValueError(f"kernels must be one of {KERNEL_MODES}, not {self.kernels!r}")


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

    def __init__(self, path: str | Path, config: SessionConfig | None = None, cpu: CpuFacts | None = None):
        """``cpu``: the CPU facts the kernels are chosen for (tests give fake ones); None detects them."""
        self.path = Path(path)
        self.config = config or SessionConfig()
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such model file")
        try:
            began = time.perf_counter()
            prepared = prepare(self.path, cpu or detect_cpu(), self.config.kernels,
                               self.config.accuracy_level, self.config.kernel_table, self.config.kernel_cache)
            self.kernels: KernelChoice = prepared.choice
            self.accuracy_level = prepared.choice.accuracy_level
            self.session = self._session(prepared.source)
            self.load_seconds = time.perf_counter() - began
            metadata = self.session.get_modelmeta().custom_metadata_map
            self.info = ModelInfo.from_metadata(metadata, str(self.path))
            if prepared.choice.mode == "nbits" and self.config.accuracy_level is None and (
                    self.info.accuracy_level != self.accuracy_level):
                self.accuracy_level = self.info.accuracy_level  # the model recommends another level
                self.kernels.accuracy_level = self.accuracy_level
                self.session = self._session(prepared.source)
        except ModelError:
            raise
        except Exception as error:  # onnxruntime raises many unrelated types for unusable files
            first = str(error).strip().splitlines()[0][:300]
            raise ModelError(f"{self.path}: onnxruntime cannot load it ({first})") from None
        logging.getLogger("speechmpq.runtime").info("%s: %s", self.path, self.kernels.summary())
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

    def _session(self, source: str | bytes) -> ort.InferenceSession:
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
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

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

    def logits_cached_batch(self, values: np.ndarray, cached: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``logits_cached`` for B windows of equal shapes in one call: (B, samples) and
        (B, frames, channels) -> (logits (B, frames + new, vocab), new frames (B, new, channels))."""
        if self.feature_dim is None:
            raise ModelError(f"{self.path}: this model has no front-end cache input (export it again)")
        feeds = {self.input_name: np.asarray(values, np.float32),
                 self.cache_name: np.asarray(cached, np.float32)}
        logits, features = self.session.run([self.output_name, self.features_name], feeds)
        return logits, features

    def transcribe(self, samples: np.ndarray) -> str:
        """Greedy CTC transcript of one whole utterance (offline)."""
        if samples.shape[-1] < self.info.receptive_field_samples:
            return ""
        ids = self.logits(self.prepare(samples))[0].argmax(-1)
        return ctc_greedy_decode(ids, self.info.tokens, self.info.blank_id)

