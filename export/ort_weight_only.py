"""onnxruntime's own weight-only quantizers (``MatMulNBitsQuantizer``), as a user would call them, on
the searched layers of an FP32 graph only: the peers mixed precision has to beat at equal stored bits.

A spec names one algorithm at one setting, or a mix by layer type (one pass per group of layers,
each pass excluding the others' nodes: ``nodes_to_include`` does not restrict, docs/ort-weight-only.md)::

    {"algo": "default", "bits": 2, "block": 32}                     every searched MatMul alike
    {"mix": {"attention": {"algo": "default", "bits": 2, "block": 32},
             "ffn": {"algo": "default", "bits": 4, "block": 128}}}  attention projections / FFN apart

Algorithms: default (ORT's DefaultWeightOnlyQuantConfig: asymmetric, uint8 zero points), hqq, rtn,
kquant, gptq (needs calibration feeds). ``stored_bits`` reads what the graph really stores.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import onnx
from onnx import numpy_helper

from speechmpq.bitplan import valid_group_size
from speechmpq.export.quiet import root_logger_at
from speechmpq.files import atomic_output

ALGORITHMS = ("default", "hqq", "rtn", "kquant", "gptq")
# The searched layers' MatMul nodes as the torch exporter names them (bitplan.SEARCHED_LINEAR_KINDS):
# /encoder/layers.N/... for the wav2vec2 family, /model/whisper/layers.N/... for WhisperForCTC.
SEARCHED_MATMUL = re.compile(r"^/(encoder|model/whisper)/layers\.\d+/(attention/(q|k|v|out)_proj"
                             r"|feed_forward/(intermediate|output)_dense)/MatMul$")
GROUPS = {"attention": re.compile(r"/attention/(q|k|v|out)_proj/"),
          "ffn": re.compile(r"/feed_forward/(intermediate|output)_dense/")}


def searched_matmuls(model: onnx.ModelProto) -> list[str]:
    names = [n.name for n in model.graph.node if n.op_type == "MatMul" and SEARCHED_MATMUL.match(n.name)]
    if not names:
        raise ValueError("no searched MatMul (encoder.layers.N attention projections / feed-forward) "
                         "in this graph")
    return names


def spec_parts(spec: dict) -> list[dict]:
    """The one-algorithm settings a spec is made of: itself, or each group's of a mix."""
    return list(spec["mix"].values()) if "mix" in spec else [spec]


def validate_spec(spec: dict) -> None:
    parts = spec_parts(spec)
    if "mix" in spec and set(spec["mix"]) != set(GROUPS):
        raise ValueError(f"a mix gives settings for exactly {sorted(GROUPS)}, not {sorted(spec['mix'])}")
    for part in parts:
        if part.get("algo") not in ALGORITHMS:
            raise ValueError(f"algo must be one of {ALGORITHMS}, not {part.get('algo')!r}")
        if part.get("bits") not in (2, 4, 8):
            raise ValueError(f"bits must be 2, 4 or 8, not {part.get('bits')!r}")
        block = part.get("block")
        if not valid_group_size(block):
            raise ValueError(f"block must be a power of two >= 16, not {block!r}")


def quantize_weight_only(model: onnx.ModelProto, spec: dict, calibration: list[dict] | None = None
                         ) -> onnx.ModelProto:
    """A copy of ``model`` with its searched MatMuls quantized by onnxruntime as ``spec`` says."""
    validate_spec(spec)
    searched = searched_matmuls(model)
    others = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in searched]
    if "mix" not in spec:
        return _one_pass(model, spec, others, calibration)
    for group, part in spec["mix"].items():
        outside = [name for name in searched if not GROUPS[group].search(name)]
        model = _one_pass(model, part, others + outside, calibration)
    return model


def _one_pass(model: onnx.ModelProto, part: dict, exclude: list[str], calibration) -> onnx.ModelProto:
    with root_logger_at(logging.ERROR) as root, warnings.catch_warnings(), redirect_stdout(StringIO()):
        warnings.simplefilter("ignore")
        from onnxruntime.quantization import matmul_nbits_quantizer as nbits

        root.setLevel(logging.ERROR)  # the import reset it (logging.basicConfig(level=INFO))
        config = _config(nbits, part, calibration)
        copy = onnx.ModelProto()
        copy.CopyFrom(model)  # the quantizer mutates the model it is given
        quantizer = nbits.MatMulNBitsQuantizer(copy, block_size=part["block"], is_symmetric=False,
                                               nodes_to_exclude=exclude, algo_config=config)
        quantizer.process()
        result = quantizer.model.model
    if not any(op.domain == "com.microsoft" for op in result.opset_import):  # RTN/k-quant/GPTQ omit it
        result.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return result


def _config(nbits, part: dict, calibration):
    algo, bits, block = part["algo"], part["bits"], part["block"]
    if algo == "default":
        return nbits.DefaultWeightOnlyQuantConfig(block_size=block, bits=bits, is_symmetric=False,
                                                  op_types_to_quantize=("MatMul",))
    if algo == "hqq":
        if bits == 8:
            raise ValueError("hqq: onnxruntime's CPU kernel refuses its 8-bit models (float zero points)")
        return nbits.HQQWeightOnlyQuantConfig(block_size=block, bits=bits)
    if bits != 4:  # 2 bits: a float fake-quant weight (no saving); 8: per-node customisation only
        raise ValueError(f"{algo}: onnxruntime packs 4-bit weights only through this call")
    if algo == "rtn":
        return nbits.RTNWeightOnlyQuantConfig()
    if algo == "kquant":
        return nbits.KQuantWeightOnlyQuantConfig()
    if not calibration:
        raise ValueError("gptq needs calibration feeds")
    # GPTQ deep-copies the reader and iterates over it: a list of feed dicts, not a generator
    return nbits.GPTQWeightOnlyQuantConfig(calibration_data_reader=list(calibration), block_size=block)


def stored_bits(model: onnx.ModelProto, searched: list[str]) -> dict:
    """Bits the graph stores per weight over the ``searched`` MatMuls (as named in the FP32 graph):
    packed codes + scales + zero points of each MatMulNBits node, 32 bits a weight where a searched
    MatMul was left in float. Also the code bits alone (the paper's accounting) and the bits per node."""
    initializers = {t.name: t for t in model.graph.initializer}
    by_name = {n.name: n for n in model.graph.node}
    total_bits = code_bits = weights = 0
    layer_bits = {}
    for name in searched:
        node = by_name.get(name) or next((by_name[n] for n in by_name if n.startswith(name + "_Q")), None)
        if node is None:
            raise ValueError(f"{name}: neither the MatMul nor its MatMulNBits is in the graph")
        if node.op_type == "MatMulNBits":
            attributes = {a.name: a.i for a in node.attribute}
            count = attributes["K"] * attributes["N"]
            stored = sum(8 * numpy_helper.to_array(initializers[i]).nbytes
                         for i in node.input[1:4] if i in initializers)
            bits = attributes["bits"]
        else:
            count = math.prod(numpy_helper.to_array(initializers[node.input[1]]).shape)
            stored, bits = 32 * count, 32
        total_bits += stored
        code_bits += bits * count
        weights += count
        layer_bits[name] = bits
    return {"stored_bits_per_weight": total_bits / weights, "average_bits": code_bits / weights,
            "layer_bits": layer_bits}


def save(model: onnx.ModelProto, path: Path) -> None:
    with atomic_output(Path(path)) as temporary:
        onnx.save_model(model, str(temporary))
