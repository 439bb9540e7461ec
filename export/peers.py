"""What a user would pick instead of speechmpq: onnxruntime's own quantizers on the same FP32 graph.

- ``ort-int8-dynamic``: ``quantize_dynamic``, MatMul weights only, int8 per output channel, activations
  quantized at run time (MatMulInteger / DynamicQuantizeMatMul). Conv stays fp32 (quantizing it this
  way was measured 2x slower than fp32 on wav2vec2-base).
- ``ort-int4-rtn``: ``MatMulNBitsQuantizer`` with its default round-to-nearest config, symmetric INT4,
  blocks of 32 along K, MatMul only; its nodes carry the accuracy level given (ORT's own default is
  0, the DequantizeLinear->MatMul fusion's is 4; the benchmark compares like with like).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import onnx

from speechmpq.export.quiet import root_logger_at

INT4_BLOCK_SIZE = 32


def quantize_peer(model: onnx.ModelProto, peer: str, accuracy_level: int) -> onnx.ModelProto:
    """``model`` quantized by onnxruntime's tool for ``peer``; the tools' log lines (one or more per
    node, and advice) are kept off the terminal, errors excepted."""
    with root_logger_at(logging.ERROR) as root:
        # importing it runs logging.basicConfig(level=INFO) once per process, resetting the root
        # logger's level (so it is set again here) and adding a stderr handler (removed on exit)
        import onnxruntime.quantization.matmul_nbits_quantizer  # noqa: F401

        root.setLevel(logging.ERROR)
        return _quantize(model, peer, accuracy_level)


def _quantize(model: onnx.ModelProto, peer: str, accuracy_level: int) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    with tempfile.TemporaryDirectory(prefix="speechmpq-peer-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "peer.onnx"
        onnx.save_model(model, str(source), save_as_external_data=model.ByteSize() > 1_500_000_000)
        if peer == "ort-int8-dynamic":
            quantize_dynamic(source, target, op_types_to_quantize=["MatMul"], per_channel=True,
                             weight_type=QuantType.QInt8,
                             use_external_data_format=model.ByteSize() > 1_500_000_000)
            return onnx.load(str(target))
        if peer == "ort-int4-rtn":
            config = DefaultWeightOnlyQuantConfig(block_size=INT4_BLOCK_SIZE, is_symmetric=True,
                                                  accuracy_level=accuracy_level, bits=4,
                                                  op_types_to_quantize=("MatMul",))
            quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), algo_config=config)
            quantizer.process()
            return quantizer.model.model
    raise ValueError(f"unknown peer {peer!r}")
