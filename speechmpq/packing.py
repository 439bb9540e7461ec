"""Integer weights as ONNX initializers in the narrowest container that holds their bits.

Export writes them, the runtime's kernel choice reads them back (``unpack``); this module needs the
onnx package (export's dependency, and the runtime's for choosing kernels at load).

ONNX packs sub-byte types densely, first element in the lowest bits: INT4 two per byte, INT2 four per
byte, odd tails padded with zero bits. ``onnx.helper.make_tensor`` stores packed bytes one per int32
varint (up to twice the size), so the bytes are packed here and written as ``raw_data``.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from speechmpq.bitplan import container_bits

# bits -> (ONNX element type, container bits, minimum opset whose DequantizeLinear takes it)
CONTAINERS = {2: (TensorProto.INT2, 2, 25), 4: (TensorProto.INT4, 4, 21), 8: (TensorProto.INT8, 8, 21)}


def pack(codes: np.ndarray, container: int) -> bytes:
    """Signed integer codes (any shape, row-major) -> packed little-endian bytes."""
    flat = np.asarray(codes).reshape(-1).astype(np.int16)
    low, high = -(2 ** (container - 1)), 2 ** (container - 1) - 1
    if flat.size and (flat.min() < low or flat.max() > high):
        raise ValueError(f"codes outside the signed {container}-bit range")
    if container == 8:
        return flat.astype(np.int8).tobytes()
    per_byte = 8 // container
    unsigned = (flat & (2**container - 1)).astype(np.uint8)
    padded = np.zeros(-(-unsigned.size // per_byte) * per_byte, dtype=np.uint8)
    padded[: unsigned.size] = unsigned
    lanes = padded.reshape(-1, per_byte)
    packed = np.zeros(lanes.shape[0], dtype=np.uint8)
    for lane in range(per_byte):
        packed |= lanes[:, lane] << np.uint8(lane * container)
    return packed.tobytes()


def integer_initializer(name: str, codes: np.ndarray, bits: int, minimum: int = 2) -> TensorProto:
    """A packed INT2/INT4/INT8 initializer holding ``codes`` (values on the ``bits`` grid)."""
    container = container_bits(bits, minimum)
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if codes.size and (codes.min() < low or codes.max() > high):
        raise ValueError(f"{name}: codes outside the {bits}-bit grid [{low}, {high}]")
    tensor = TensorProto()
    tensor.name = name
    tensor.data_type = CONTAINERS[container][0]
    tensor.dims.extend(codes.shape)
    tensor.raw_data = pack(codes, container)
    return tensor


def unpack(raw: bytes, container: int, count: int) -> np.ndarray:
    """Packed little-endian bytes -> ``count`` signed int8 codes (``pack``'s inverse)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    if container == 8:
        return data[:count].view(np.int8).copy()
    per_byte, mask = 8 // container, 2**container - 1
    lanes = np.stack([(data >> np.uint8(lane * container)) & np.uint8(mask) for lane in range(per_byte)], 1)
    codes = lanes.reshape(-1)[:count].astype(np.int8)
    return np.where(codes >= 2 ** (container - 1), codes - 2**container, codes).astype(np.int8)
