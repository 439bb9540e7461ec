"""How stock onnxruntime can run a weight of a given bit width: the graph pieces, one per kernel.

    fp32               x ─► MatMul(W float32)
    int8-dynamic       x ─► DynamicQuantizeLinear ─► MatMulInteger(W INT8) ─► Cast ─► Mul(x_scale · w_scale)
                       (standard ONNX ops, what onnxruntime's quantize_dynamic writes; ORT fuses them into
                       DynamicQuantizeMatMul: uint8 activations quantized per call, int8 weights)
    int8-dynamic-fromB the same with W stored as INTB (B = 2, 4) and Cast to INT8 before MatMulInteger:
                       the file keeps B bits per weight, onnxruntime folds the Cast when the session
                       loads, so memory holds 8 bits and the call runs DynamicQuantizeMatMul
    nbits-B            x ─► MatMul(DequantizeLinear(W INTB, block scales))
                       (weight-only QDQ; ORT fuses it into MatMulNBits with the session's accuracy level:
                       0 float activations, 4 int8 activations quantized per block in the kernel)

Kernel ids: ``fp32``, ``int8-dynamic``, ``nbits{B}-block{S}`` (+ accuracy level, a session option, kept
beside the id; ``speechmpq.kernel_table``). ``export/kernels.py`` times them on one-layer models
(``linear_model``); the runtime's kernel choice (``runtime/kernel_choice.py``) picks one per layer for
the CPU it runs on and rewrites the exported graph's weight-only layers into it at load. Needs the
onnx package.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from speechmpq.kernel_table import FP32, INT8_DYNAMIC, parse_kernel
from speechmpq.packing import integer_initializer


def int8_dynamic_nodes(x: str, out: str, name: str, codes_kn: np.ndarray, scale: np.ndarray, bits: int = 8,
                       ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and initializers computing out = x @ (codes · scale) with dynamically quantized x.

    ``codes_kn``: int8 (K, N), stored as INT``bits`` (2, 4: + a Cast to INT8 that onnxruntime folds
    at load); ``scale``: per tensor (1 value) or per output column (N,)."""
    q, w_zero, w_scale = f"{name}.weight_quantized", f"{name}.weight_zero_point", f"{name}.weight_scale"
    scale = np.asarray(scale, np.float32).reshape(-1)
    scale = scale.reshape(()) if scale.size == 1 else scale
    initializers = [integer_initializer(q, np.ascontiguousarray(codes_kn.astype(np.int8)), bits, bits),
                    numpy_helper.from_array(np.zeros((), np.int8), w_zero),
                    numpy_helper.from_array(scale, w_scale)]
    t = {k: f"{name}/{k}" for k in ("xq", "xs", "xz", "int", "float", "scale")}
    cast = []
    if bits != 8:
        cast = [
            helper.make_node(
                "Cast", [q], [f"{name}.weight_int8"], to=TensorProto.INT8, name=f"{name}/CastInt8"
            )
        ]
        q = f"{name}.weight_int8"
    nodes = cast + [
        helper.make_node("DynamicQuantizeLinear", [x], [t["xq"], t["xs"], t["xz"]],
                         name=f"{name}/DynamicQuantize"),
        helper.make_node("MatMulInteger", [t["xq"], q, t["xz"], w_zero], [t["int"]],
                         name=f"{name}/MatMulInteger"),
        helper.make_node("Cast", [t["int"]], [t["float"]], to=TensorProto.FLOAT, name=f"{name}/Cast"),
        helper.make_node("Mul", [t["xs"], w_scale], [t["scale"]], name=f"{name}/ScaleMul"),
        helper.make_node("Mul", [t["float"], t["scale"]], [out], name=f"{name}/Mul"),
    ]  # fmt: skip
    return nodes, initializers


def block_scales(per_column: np.ndarray, k: int, block: int) -> np.ndarray:
    """Per-output-column scales (N,) repeated over the ceil(K/block) blocks of a
    DequantizeLinear(axis=0, block_size=block) -> (blocks, N) float32."""
    return np.tile(np.asarray(per_column, np.float32), (-(-k // block), 1))


def nbits_nodes(
    x: str, out: str, name: str, codes_kn: np.ndarray, scale: np.ndarray, bits: int, block: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Weight-only QDQ: INT``bits`` codes (K, N) with per-block scales, DequantizeLinear, MatMul."""
    k, n = codes_kn.shape
    scales = block_scales(np.broadcast_to(np.asarray(scale, np.float32).reshape(-1), (n,)), k, block)
    q, s, dq = f"{name}.weight_quantized", f"{name}.weight_scale", f"{name}.weight_dequantized"
    nodes = [
        helper.make_node(
            "DequantizeLinear", [q, s], [dq], axis=0, block_size=block, name=f"{name}/DequantizeLinear"
        ),
        helper.make_node("MatMul", [x, dq], [out], name=f"{name}/MatMul"),
    ]
    return nodes, [
        integer_initializer(q, np.ascontiguousarray(codes_kn), bits, bits),
        numpy_helper.from_array(scales, s),
    ]



def linear_model(
    kernel: str, k: int, n: int, seed: int = 0, code_limit: int | None = None
) -> onnx.ModelProto:
    """A one-layer model x (rows, K) -> y (rows, N) running ``kernel`` on random weights (codes in
    [-limit, limit), limit = 2^(bits-1) or ``code_limit``)."""
    kind, bits, block = parse_kernel(kernel)
    rng = np.random.default_rng(seed)
    limit = code_limit or 2 ** (min(bits, 8) - 1)
    codes = rng.integers(-limit, limit, (k, n)).astype(np.int8)
    scale = np.float32(0.02 / limit)
    if kind == FP32:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
        initializers = [numpy_helper.from_array(codes.astype(np.float32) * scale, "w")]
    elif kind == INT8_DYNAMIC:
        nodes, initializers = int8_dynamic_nodes("x", "y", "layer", codes, scale, bits)
    else:
        nodes, initializers = nbits_nodes("x", "y", "layer", codes, scale, bits, block)
    return _model(nodes, initializers, [("x", ["rows", k])], [("y", ["rows", n])], 25 if bits == 2 else 21)


def conv_model(
    kernel: str, channels_in: int, channels_out: int, width: int, stride: int, seed: int = 0
) -> onnx.ModelProto:
    """One Conv1d layer x (1, C_in, T) -> y: fp32, or int8-dynamic (DynamicQuantizeLinear ->
    ConvInteger -> Cast -> Mul, as quantize_dynamic writes it)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(-128, 128, (channels_out, channels_in, width)).astype(np.int8)
    scale = np.float32(0.02 / 128)
    if kernel == FP32:
        nodes = [helper.make_node("Conv", ["x", "w"], ["y"], strides=[stride])]
        initializers = [numpy_helper.from_array(codes.astype(np.float32) * scale, "w")]
    elif kernel == INT8_DYNAMIC:
        initializers = [
            numpy_helper.from_array(codes, "wq"),
            numpy_helper.from_array(np.zeros((), np.int8), "wz"),
            numpy_helper.from_array(np.array(scale, np.float32), "ws"),
        ]
        nodes = [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
            helper.make_node("ConvInteger", ["xq", "wq", "xz", "wz"], ["yi"], strides=[stride]),
            helper.make_node("Cast", ["yi"], ["yf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["xs", "ws"], ["s"]),
            helper.make_node("Mul", ["yf", "s"], ["y"]),
        ]
    else:
        raise ValueError(f"conv kernels are fp32 and int8-dynamic, not {kernel!r}")
    return _model(
        nodes, initializers, [("x", [1, channels_in, "time"])], [("y", [1, channels_out, "frames"])], 21
    )


def _model(nodes, initializers, inputs, outputs, opset: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "kernel",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 11 if opset >= 25 else 10
    return model
