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
    # Weights outside the bit plan in MatMuls (feature projection, CTC head): fp32, or int8 weight-only
    # (per output channel, MSE step). Conv weights outside the plan always stay fp32.
    others: str = "fp32"
    # onnxruntime MatMulNBits accuracy level recommended to the runtime (session option
    # session.qdq_matmulnbits_accuracy_level) and baked into the ort-int4-rtn peer: 4 quantizes
    # activations to int8 inside the kernel (faster), 0 keeps them float32.
    accuracy_level: int = 4
    # Streaming defaults written to the metadata (the runtime reads them; milliseconds, rounded to
    # whole frames).
    chunk_ms: int = 640
    left_context_ms: int = 2560
    right_context_ms: int = 320
    # Save weights as external data (file.onnx.data beside the .onnx) above this many bytes; the
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
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise ValueError(f"accuracy_level must be 0..4, not {self.accuracy_level}")
        if self.chunk_ms <= 0 or self.left_context_ms < 0 or self.right_context_ms < 0:
            raise ValueError("chunk_ms must be positive and the contexts non-negative")
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
