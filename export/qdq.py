"""Graph rewrite: float weights -> integer initializers at their planned bit widths + DequantizeLinear.

Before (as torch.onnx writes a Linear; the weight is folded to its transpose)::

    x ──────────────► MatMul ──► Add(bias) ──►
    W^T (float32, K x N) ─┘

After (weight-only QDQ; ORT fuses DequantizeLinear -> MatMul into one MatMulNBits kernel)::

    x ──────────────────────────────────────► MatMul ──► Add(bias) ──►
    Wq (INT2/INT4/INT8, K x N) ─► DequantizeLinear ─┘
    scales (float32, ceil(K/block) x N) ─┘  axis=0, block_size=block

A per-group layer (bit plan granularity "per-group", G input weights per scale) is written with
block_size = G and its own scales, transposed to (K / G, N), whatever the export's block size (smaller
or larger): its blocks are the plan's groups, nothing repeated or merged.

The file is portable: every linear layer is written this way, whatever CPU exports it. Which kernel
runs a layer (MatMulNBits at some block size, int8 weights with dynamically quantized activations,
fp32) is chosen on the device when the runtime loads the file (``runtime/kernel_choice.py``). Each
node carries ``speechmpq.layer``, ``speechmpq.bits``, ``speechmpq.searched``, and for linear layers
``speechmpq.kernel`` (the stored form, ``nbits{B}-block{S}``) and ``speechmpq.block_size``.

Conv weights in a plan become Wq ─► DequantizeLinear (per tensor or per output channel) ─► Conv,
which ORT runs as written. The float weight is found by value (the quantized model's weight is exactly
codes x scale), so the rewrite does not depend on how an exporter names initializers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from speechmpq.bitplan import container_bits
from speechmpq.errors import SpeechmpqError
from speechmpq.kernel_graphs import block_scales
from speechmpq.packing import CONTAINERS, integer_initializer


@dataclass
class QuantizedWeight:
    name: str  # module name, as in the bit plan
    bits: int
    codes: np.ndarray  # int8 codes in PyTorch layout: (out, in) linear, (out, in/groups, k) conv
    # float32, broadcasts over codes: all ones but dim 0 (per channel) or all ones; per group
    # (out, in / group_size)
    scale: np.ndarray
    kind: str  # "linear" or "conv1d"
    searched: bool  # chosen by the search (False: fixed by the plan, or an "others" int8 layer)
    group_size: int | None = None  # per group: input weights per scale (linear only)

    def float_weight(self) -> np.ndarray:
        """The float weight the PyTorch model computes with: codes x scale in float32 (per group:
        each scale repeated group_size times along the input axis)."""
        scale = self.scale.astype(np.float32)
        if self.group_size is not None:
            scale = np.repeat(scale, self.group_size, axis=1)
        return self.codes.astype(np.float32) * scale


def _digest(array: np.ndarray) -> tuple:
    return array.shape, hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


def _index_initializers(graph: onnx.GraphProto) -> dict[tuple, list[onnx.TensorProto]]:
    index: dict[tuple, list[onnx.TensorProto]] = {}
    for tensor in graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT:
            index.setdefault(_digest(numpy_helper.to_array(tensor)), []).append(tensor)
    return index


def _consumers(graph: onnx.GraphProto, tensor_name: str) -> list[onnx.NodeProto]:
    return [node for node in graph.node if tensor_name in node.input]


def _set_metadata(node: onnx.NodeProto, weight: QuantizedWeight, kernel: dict | None = None) -> None:
    pairs = [("speechmpq.layer", weight.name), ("speechmpq.bits", str(weight.bits)),
             ("speechmpq.searched", str(weight.searched).lower())]
    if kernel is not None:
        pairs += [
            ("speechmpq.kernel", kernel["kernel"]),
            ("speechmpq.block_size", str(kernel["block_size"] or 0)),
        ]
    for key, value in pairs:
        node.metadata_props.add(key=key, value=value)


def _scales(weight: QuantizedWeight, block_size: int, k: int) -> np.ndarray:
    """Per-output-channel scales (N,) repeated over ceil(K/block) blocks -> (blocks, N)."""
    out_channels = weight.codes.shape[0]
    per_channel = np.broadcast_to(weight.scale.reshape(-1), (out_channels,)) if weight.scale.size in (
        1, out_channels) else None
    if per_channel is None:
        raise SpeechmpqError(f"{weight.name}: scale of shape {weight.scale.shape} is neither per "
                             f"tensor nor per output channel")
    return block_scales(per_channel, k, block_size)


def apply_quantized_weights(
    model: onnx.ModelProto, weights: list[QuantizedWeight], block_size: int, min_container_bits: int = 2
) -> list[dict]:
    """Rewrite ``model`` in place; returns one record per layer (names, container, kernel, bytes).
    Linear layers are stored at ``block_size`` rows per scale (a per-group layer at its group size)."""
    graph = model.graph
    index = _index_initializers(graph)
    records, dequantizers = [], []
    for weight in weights:
        original, consumers = _float_initializer(graph, index, weight)
        container = container_bits(weight.bits, min_container_bits)
        block = weight.group_size if weight.group_size is not None else block_size
        record, dequantize = _dequantize_rewrite(graph, weight, original, consumers, block,
                                                 min_container_bits, container)
        dequantizers.append(dequantize)
        records.append(record)
    # DequantizeLinear reads initializers only, so the graph stays topologically sorted with them first.
    nodes = dequantizers + [_copy(node) for node in graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    return records


def _float_initializer(
    graph: onnx.GraphProto, index: dict[tuple, list[onnx.TensorProto]], weight: QuantizedWeight
) -> tuple[onnx.TensorProto, list[onnx.NodeProto]]:
    """(the graph's float initializer equal to ``weight``'s codes x scale, the nodes reading it),
    checked: exactly one such initializer, read as input B of MatMuls (linear) or Convs only."""
    float_weight = weight.float_weight()
    stored = float_weight.T if weight.kind == "linear" else float_weight
    matches = index.get(_digest(stored), [])
    if len(matches) != 1:
        found = "not found" if not matches else f"found {len(matches)} times"
        raise SpeechmpqError(f"{weight.name}: its weight is {found} in the exported graph; "
                             f"cannot place its DequantizeLinear")
    original = matches[0]
    consumers = _consumers(graph, original.name)
    expected = "MatMul" if weight.kind == "linear" else "Conv"
    if not consumers or any(node.op_type != expected or list(node.input).index(original.name) != 1
                            for node in consumers):
        raise SpeechmpqError(f"{weight.name}: its weight does not feed a {expected} as input B; "
                             f"unsupported graph pattern")
    return original, consumers


def _graph_codes(weight: QuantizedWeight) -> np.ndarray:
    """Codes in the graph's layout: (K, N) for a MatMul's B (the PyTorch (N, K) transposed), as is for
    a Conv."""
    return weight.codes.T if weight.kind == "linear" else weight.codes


def _dequantize_rewrite(
    graph: onnx.GraphProto,
    weight: QuantizedWeight,
    original: onnx.TensorProto,
    consumers: list[onnx.NodeProto],
    block: int,
    min_container_bits: int,
    container: int,
) -> tuple[dict, onnx.NodeProto]:
    """Swap the initializer for packed codes + scales and point its consumers at a DequantizeLinear
    of them (blocks of ``block`` rows for a linear layer); returns (record, that DequantizeLinear)."""
    codes = _graph_codes(weight)
    q_name, s_name, dq_name = (f"{weight.name}.weight_quantized", f"{weight.name}.weight_scale",
                               f"{weight.name}.weight_dequantized")
    quantized = integer_initializer(q_name, np.ascontiguousarray(codes), weight.bits, min_container_bits)
    if weight.group_size is not None:  # (out, K / G) -> (K / G, N), one scale per block of G rows of K
        if weight.kind != "linear" or block != weight.group_size:
            raise SpeechmpqError(f"{weight.name}: per-group scales need a linear layer at block size "
                                 f"{weight.group_size}")
        scale = np.ascontiguousarray(weight.scale.astype(np.float32).T)
        attributes = {"axis": 0, "block_size": block}
    elif weight.kind == "linear":
        scale = _scales(weight, block, codes.shape[0])
        attributes = {"axis": 0, "block_size": block}
    elif weight.scale.size == 1:
        scale, attributes = weight.scale.reshape(()).astype(np.float32), {}
    else:
        scale, attributes = weight.scale.reshape(-1).astype(np.float32), {"axis": 0}
    dequantize = helper.make_node("DequantizeLinear", [q_name, s_name], [dq_name],
                                  name=f"{weight.name}/DequantizeLinear", **attributes)
    used = ({"kernel": f"nbits{container}-block{block}", "block_size": block}
            if weight.kind == "linear" else None)
    _set_metadata(dequantize, weight, used)
    for node in consumers:
        node.input[1] = dq_name
        _set_metadata(node, weight, used)
    graph.initializer.remove(original)
    graph.initializer.extend([quantized, numpy_helper.from_array(scale, s_name)])
    record = {
        "layer": weight.name, "bits": weight.bits, "container": container,
        "onnx_type": onnx.TensorProto.DataType.Name(CONTAINERS[container][0]),
        "kernel": used["kernel"] if used else "conv-qdq", "block_size": block if used else None,
        "searched": weight.searched, "initializer": q_name, "elements": int(codes.size),
        "weight_bytes": len(quantized.raw_data), "scale_bytes": int(scale.size * 4),
        "replaced_float_bytes": int(weight.codes.size * 4),
    }  # fmt: skip
    return record, dequantize


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def minimum_opset(weights: list[QuantizedWeight], min_container_bits: int = 2) -> int:
    return max([CONTAINERS[container_bits(w.bits, min_container_bits)][2] for w in weights], default=17)
