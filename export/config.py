"""Export settings: one dataclass, validated on creation, convertible to and from plain dicts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

EXPORTERS = ("torchscript", "dynamo")
OTHERS = ("fp32", "int8")
PEERS = ("ort-int8-dynamic", "ort-int4-rtn")


@dataclass
class ExportConfig:
    # torch.onnx exporter. TorchScript was measured faster at run time and to export, and needs no
    # onnxscript (results/export_demo.md, "exporter"); dynamo is kept for comparison.
    exporter: str = "torchscript"
    # ONNX opset; None = the lowest that holds the graph (17 fp32, 21 INT4/INT8, 25 INT2).
    opset: int | None = None
    # Rows of K (the MatMul's input dimension) that share one scale in the stored weight. ORT fuses
    # DequantizeLinear -> MatMul into MatMulNBits only for blocks of 16..256 (powers of two); the
    # plan's per-tensor or per-channel scales are repeated per block, so any block size is exact.
    block_size: int = 256
    # Weights outside the bit plan (conv front end, positional conv, feature projection, CTC head):
    # fp32, or int8 weight-only per output channel (MSE steps). MatMul weights then fuse into
    # MatMulNBits; conv weights are dequantized by a DequantizeLinear on every run.
    others: str = "fp32"
    # Narrowest container used: 2 stores 2-bit weights as INT2 (smallest file); 4 stores them as INT4
    # (twice the bytes for those layers, but ORT 1.32 has fast int8-activation kernels for 4 and 8
    # bits only: its 2-bit MatMulNBits was measured slower than fp32 MatMul here).
    min_container_bits: int = 2
    # onnxruntime MatMulNBits accuracy level recommended to the runtime (session option
    # session.qdq_matmulnbits_accuracy_level) and baked into the ort-int4-rtn peer. 0 keeps
    # activations float32 in MatMulNBits: transcripts identical to PyTorch. 4 quantizes activations to
    # int8 inside the kernel (ORT's default for the fusion): changes ~10 % of the demo transcripts at
    # no significant WER cost (results/export_demo.md). None: 0.
    accuracy_level: int | None = None
    # The file is portable: every linear layer is stored weight-only (DequantizeLinear -> MatMul) and
    # the runtime picks each layer's kernel for the CPU it loads on (runtime/kernel_choice.py). A path
    # to a table from ``speechmpq kernels`` embeds it in the metadata: the runtime prefers it on CPUs
    # of the class it was measured on. "default" (or "none") embeds nothing: the runtime uses its
    # built-in rules (speechmpq/kernel_defaults.json).
    kernel_table: str = "default"
    # Streaming defaults written to the metadata (the runtime reads them; milliseconds, rounded to
    # whole frames). None: the model config's own ``streaming_ms`` (a family's dev-chosen window),
    # else STREAMING_DEFAULTS_MS.
    chunk_ms: int | None = None
    left_context_ms: int | None = None
    right_context_ms: int | None = None
    # The LM the model's decoding was tuned with, as a file name the runtime looks for beside the
    # model (e.g. "en-us.lm.npz"), with the LM weight and word score chosen on dev: the runtime's
    # "auto" decoder then uses that LM only, and these weights unless told others. None: no advice.
    lm: str | None = None
    lm_weight: float | None = None
    word_score: float | None = None
    lm_beam_size: int | None = None  # hypotheses its beam search keeps (chosen on dev; None: runtime's 24)
    # Split the graph after the conv feature encoder: an extra input takes the frames a streaming
    # runtime already encoded and an extra output gives the new ones, so each window runs the convs
    # on its new samples only (runtime/stream.py). Exact for feat_extract_norm="layer" front ends;
    # "group" ones normalise over the window, so the runtime recomputes them per window unless asked.
    frontend_cache: bool = True
    # Also write <name>.audio.onnx: file bytes (wav/flac/mp3) in, logits and greedy ids out, decoded in
    # the graph by onnxruntime-extensions' AudioDecoder (export/audio_graph.py).
    audio_graph: bool = False
    # Save weights as external data (file.onnx.<id>.data beside the .onnx) above this many bytes; the
    # protobuf limit is 2 GiB.
    external_data_threshold: int = 2_000_000_000

    def __post_init__(self):
        if self.exporter not in EXPORTERS:
            raise ValueError(f"exporter must be one of {EXPORTERS}, not {self.exporter!r}")
        if self.others not in OTHERS:
            raise ValueError(f"others must be one of {OTHERS}, not {self.others!r}")
        if self.opset is not None and not 17 <= self.opset <= 25:
            raise ValueError(f"opset must be in 17..25, not {self.opset}")
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise ValueError(f"block_size must be a power of two >= 16, not {self.block_size}")
        if self.min_container_bits not in (2, 4, 8):
            raise ValueError(f"min_container_bits must be 2, 4 or 8, not {self.min_container_bits}")
        if self.accuracy_level not in (None, 0, 1, 2, 3, 4):
            raise ValueError(f"accuracy_level must be 0..4, not {self.accuracy_level}")
        if ((self.chunk_ms is not None and self.chunk_ms <= 0)
                or any(v is not None and v < 0 for v in (self.left_context_ms, self.right_context_ms))):
            raise ValueError("chunk_ms must be positive and the contexts non-negative")
        if self.lm is not None and ("/" in self.lm or "\\" in self.lm or not self.lm.strip()):
            raise ValueError(f"lm must be a file name (looked up beside the model), not {self.lm!r}")
        if (self.lm_weight is not None or self.word_score is not None or self.lm_beam_size is not None) \
                and self.lm is None:
            raise ValueError("lm_weight, word_score and lm_beam_size are advice for an lm: give its file "
                             "name too")
        if self.lm_beam_size is not None and self.lm_beam_size < 1:
            raise ValueError(f"lm_beam_size must be >= 1, not {self.lm_beam_size}")
        if self.external_data_threshold <= 0:
            raise ValueError("external_data_threshold must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ExportConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown export settings: {sorted(unknown)}")
        return cls(**data)
