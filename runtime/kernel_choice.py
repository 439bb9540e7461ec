"""Each layer's kernel, chosen when a model loads, for the CPU it loads on.

An exported .onnx is portable: every quantized linear layer is stored weight-only
(``INTB codes ─► DequantizeLinear(blocks) ─► MatMul``), which stock onnxruntime computes correctly on
every CPU (``export/qdq.py``). Which kernel is fastest, and which is exact, depends on the CPU, so the
choice is made here, per layer, from

- the CPU's facts (``cpu_facts.detect_cpu``: the instruction-set flags onnxruntime's MLAS decides on),
- what each layer stores (bits, shape, largest |code|, per-channel or per-group scales),
- a kernel table: one given to the session, else one embedded in the model measured on a CPU of this
  class (``kernel_table.same_class``), else the built-in rule for this class
  (``speechmpq/kernel_defaults.json``), else none (the layers run as stored).

Modes (``SessionConfig.kernels``, ``--kernels``):

    auto   the fastest kernel per layer that is exact on this CPU and keeps the model's activation
           precision: at MatMulNBits accuracy level 0 (the export's default: float activations,
           PyTorch's numerics) MatMulNBits at the best block size; at levels 1-4 (int8 activations
           accepted) also int8-dynamic, only where its u8 x s8 products cannot overflow int16
           (codes within +-64, or VNNI/AMX, or aarch64)
    int8   int8-dynamic wherever it is exact on this CPU and the layer's scales are per channel
    nbits  every layer as stored (MatMulNBits at its block size; nothing rewritten)
    float  every quantized linear layer dequantized to float32 at load (a reference)

A choice that differs from the stored form is a graph rewrite in memory (``rewrite``), before/after::

    stored     x ─► MatMul ◄─ DequantizeLinear(Wq INTB, scales (K/S, N), block_size=S)
    int8       x ─► DynamicQuantizeLinear ─► MatMulInteger(Wq INT8) ─► Cast ─► Mul(x_scale · w_scale)
    nbits S'   the same DequantizeLinear with block_size=S' and its per-channel scales re-tiled
    float      x ─► MatMul(W float32 = codes · scales)

The rewritten file is kept in a cache folder (``kernel_cache``), keyed by the model file and the
choice, so later loads skip the rewrite (and its memory). Needs the onnx package only when a layer
is rewritten; without it the layers run as stored and the choice says why.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from speechmpq.errors import ModelError
from speechmpq.kernel_table import (
    FP32,
    INT8_DYNAMIC,
    choose,
    default_rules,
    int8_class,
    load_table,
    parse_kernel,
    read_embedded_table,
    same_class,
    saturation_free,
)
from speechmpq.runtime.cpu_facts import CpuFacts

KERNEL_MODES = ("auto", "int8", "nbits", "float")
FACTS_FORMAT = 1  # version of the per-model facts kept in the cache
_CONTAINERS = {26: 2, 22: 4, 3: 8}  # ONNX TensorProto INT2, INT4, INT8 -> container bits

@dataclass
class LayerKernel:
    layer: str  # module name, as in the bit plan
    bits: int  # stored container bits
    k: int  # MatMul input features
    n: int  # MatMul output features
    max_code: int  # largest |integer code|
    per_channel: bool  # one scale per output column (every block's scales equal)
    stored: str  # the kernel id the file stores (nbits{B}-block{S})
    chosen: str = ""  # the kernel id it runs as here
    why: str = ""  # one phrase: why this kernel


@dataclass
class KernelChoice:
    mode: str
    cpu: CpuFacts
    source: str  # where the timings came from
    accuracy_level: int
    layers: list[LayerKernel] = field(default_factory=list)
    note: str = ""  # why the choice could not be applied (e.g. no onnx package), else ""

    @property
    def rewritten(self) -> bool:
        return any(layer.chosen != layer.stored for layer in self.layers)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.chosen] = counts.get(layer.chosen, 0) + 1
        return dict(sorted(counts.items()))

    def summary(self) -> str:
        """One line: the mode, the CPU, the kernels and how many layers run each."""
        if not self.layers:
            line = f"kernels ({self.mode}): every layer as stored, on {self.cpu.label}"
            return line + (f" [{self.note}]" if self.note else "")
        kernels = ", ".join(f"{count} {kernel}" for kernel, count in self.counts().items())
        line = (f"kernels ({self.mode}, {self.cpu.label}; {self.source}): {kernels}; "
                f"MatMulNBits accuracy level {self.accuracy_level}")
        return line + (f" [{self.note}]" if self.note else "")

    def table(self) -> str:
        """Per layer: bits, stored form, the kernel chosen and why (fixed-width text)."""
        rows = [("layer", "bits", "max|code|", "stored", "runs as", "why")]
        rows += [(x.layer, str(x.bits), str(x.max_code), x.stored, x.chosen, x.why) for x in self.layers]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths + [0], strict=True))
                         .rstrip() for row in rows)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "cpu": asdict(self.cpu), "source": self.source,
                "accuracy_level": self.accuracy_level, "counts": self.counts(), "note": self.note,
                "layers": {x.layer: {"bits": x.bits, "stored": x.stored, "kernel": x.chosen, "why": x.why}
                           for x in self.layers}}


# ---- the model's layers ----------------------------------------------------------------------------
def _node_metadata(node) -> dict[str, str]:
    return {entry.key: entry.value for entry in node.metadata_props}


def _codes(tensor) -> np.ndarray:
    from onnx import numpy_helper

    return np.asarray(numpy_helper.to_array(tensor)).astype(np.int8)


def _quantized_linears(model) -> list[dict]:
    """The graph's speechmpq weight-only linear layers: name, its DequantizeLinear, MatMul consumers,
    codes (K, N) int8, scales (blocks, N), block size."""
    from onnx import numpy_helper

    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    layers = []
    for node in graph.node:
        meta = _node_metadata(node)
        if node.op_type != "DequantizeLinear" or "speechmpq.layer" not in meta:
            continue
        users = consumers.get(node.output[0], [])
        if not users or any(user.op_type != "MatMul" or user.input[1] != node.output[0] for user in users):
            continue  # a conv layer (or an unknown pattern): runs as stored
        if node.input[0] not in initializers or node.input[1] not in initializers:
            continue
        block = next((a.i for a in node.attribute if a.name == "block_size"), 0)
        codes = _codes(initializers[node.input[0]])
        scales = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        if codes.ndim != 2 or scales.ndim != 2 or not block:
            continue
        layers.append({"name": meta["speechmpq.layer"], "dequantize": node, "matmuls": users,
                       "codes": codes, "scales": scales, "block": block,
                       "container": _CONTAINERS.get(initializers[node.input[0]].data_type, 8)})
    return layers


def layer_facts(model) -> list[LayerKernel]:
    """What the choice needs of each quantized linear layer (cheap to keep: no weights)."""
    facts = []
    for layer in _quantized_linears(model):
        codes, scales = layer["codes"], layer["scales"]
        per_channel = bool(np.all(scales == scales[:1])) and len(layer["matmuls"]) == 1
        facts.append(LayerKernel(
            layer=layer["name"], bits=layer["container"], k=codes.shape[0], n=codes.shape[1],
            max_code=int(np.abs(codes.astype(np.int16)).max(initial=0)), per_channel=per_channel,
            stored=f"nbits{layer['container']}-block{layer['block']}"))
    return facts


# ---- the choice ------------------------------------------------------------------------------------
def _timings(
    cpu: CpuFacts, table_path: str | None, embedded: str | None
) -> tuple[dict | None, dict | None, str]:
    """(table, rule, where they came from) for this CPU: a given table, an embedded one of this
    CPU's class, the built-in rule of this class, or nothing."""
    if table_path:
        return load_table(table_path), None, f"table {table_path}"
    table = read_embedded_table(embedded) if embedded else None
    if table is not None and same_class(table, cpu.arch, cpu.isa):
        machine = table["machine"]
        return table, None, f"the model's table ({machine.get('cpu')}, {machine.get('date')})"
    rule = default_rules(cpu.arch, list(cpu.isa))
    if rule is not None:
        return None, rule, f"built-in rule {rule['name']}"
    return None, None, f"nothing measured for {int8_class(cpu.arch, cpu.isa)}"


def choose_kernels(facts: list[LayerKernel], cpu: CpuFacts, mode: str = "auto", accuracy_level: int = 0,
                   table_path: str | None = None, embedded_table: str | None = None) -> KernelChoice:
    """Fill each layer's ``chosen`` and ``why`` for ``cpu`` in ``mode``; returns the choice."""
    if mode not in KERNEL_MODES:
        raise ValueError(f"kernels must be one of {KERNEL_MODES}, not {mode!r}")
    if mode in ("nbits", "float", "int8"):
        table, rule, source = None, None, f"--kernels {mode}"
    else:
        table, rule, source = _timings(cpu, table_path, embedded_table)
    choice = KernelChoice(mode, cpu, source, accuracy_level, facts)
    picked = {}
    if table is not None or rule is not None:
        eligible = [{"name": x.layer, "container": x.bits, "k": x.k, "n": x.n, "max_code": x.max_code,
                     "block_size": parse_kernel(x.stored)[2]} for x in facts if x.per_channel]
        picked = choose(eligible, table, rule, accuracy_level, 256, (cpu.arch, list(cpu.isa)),
                        int8_activations=accuracy_level > 0)[1]
    for layer in facts:
        exact = saturation_free(layer.max_code, list(cpu.isa), cpu.arch)
        layer.chosen, layer.why = layer.stored, "as stored"
        if mode == "float":
            layer.chosen, layer.why = FP32, "float reference"
        elif not layer.per_channel and mode in ("auto", "int8"):
            layer.why = "per-group scales: runs as stored"
        elif mode == "int8":
            if exact:
                layer.chosen, layer.why = _int8_id(layer.bits), "int8 asked"
            else:
                layer.why = f"codes up to {layer.max_code} overflow int8-dynamic without VNNI"
        elif mode == "auto" and layer.layer in picked:
            layer.chosen = picked[layer.layer]["kernel"]
            kept = parse_kernel(layer.chosen)[0] != INT8_DYNAMIC
            layer.why = ("fastest measured" if picked[layer.layer]["predicted_ms"] is not None
                         else "rule for its bits")
            if kept and accuracy_level == 0:
                layer.why += " with float activations (accuracy level 0)"
            elif kept and not exact:
                layer.why += f"; codes up to {layer.max_code}: int8-dynamic would overflow here"
        elif mode == "auto":
            layer.why = "nothing measured: as stored"
    return choice


def _int8_id(bits: int) -> str:
    return INT8_DYNAMIC if bits == 8 else f"{INT8_DYNAMIC}-from{bits}"


# ---- the rewrite -----------------------------------------------------------------------------------
def rewrite(model, choice: KernelChoice) -> None:
    """Rewrite ``model`` in place so each layer runs as ``choice`` says (see the module sketch)."""
    from onnx import helper, numpy_helper

    from speechmpq.kernel_graphs import block_scales, int8_dynamic_nodes

    wanted = {x.layer: x.chosen for x in choice.layers if x.chosen != x.stored}
    graph = model.graph
    drop_nodes, replace, drop_initializers, add_initializers = set(), {}, set(), []
    for layer in _quantized_linears(model):
        kernel = wanted.get(layer["name"])
        if kernel is None:
            continue
        dequantize, codes, scales = layer["dequantize"], layer["codes"], layer["scales"]
        kind, _, block = parse_kernel(kernel)
        if kind == "nbits":  # same codes, scales re-tiled for the new block size
            scale_name = dequantize.input[1]
            drop_initializers.add(scale_name)
            add_initializers.append(numpy_helper.from_array(block_scales(scales[0], codes.shape[0], block),
                                                            scale_name))
            new = helper.make_node("DequantizeLinear", list(dequantize.input), list(dequantize.output),
                                   name=dequantize.name, axis=0, block_size=block)
            new.metadata_props.extend(dequantize.metadata_props)
            replace[dequantize.output[0]] = [new]
            continue
        drop_nodes.add(dequantize.output[0])
        drop_initializers.update(dequantize.input[:2])
        if kind == FP32:
            weight = codes.astype(np.float32) * np.repeat(scales, layer["block"], axis=0)[: codes.shape[0]]
            add_initializers.append(numpy_helper.from_array(weight, dequantize.output[0]))
        else:  # int8-dynamic: the one MatMul becomes the dynamic-quantization nodes
            matmul = layer["matmuls"][0]
            nodes, initializers = int8_dynamic_nodes(matmul.input[0], matmul.output[0], layer["name"], codes,
                                                     scales[0], 8)
            replace[matmul.output[0]] = nodes
            add_initializers += initializers
    kept = [t for t in graph.initializer if t.name not in drop_initializers]
    # nodes are keyed by their first output (unique in the graph; protobuf wrappers have no stable id)
    nodes = [new for node in graph.node if node.output[0] not in drop_nodes
             for new in replace.get(node.output[0], [node])]
    nodes = [_copy(node) for node in nodes]
    del graph.initializer[:]
    graph.initializer.extend(kept + add_initializers)
    del graph.node[:]
    graph.node.extend(nodes)


def _copy(node):
    import onnx

    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


# ---- loading -----------------------------------------------------------------------------------------
def kernel_cache() -> Path:
    """Where rewritten models are kept: $SPEECHMPQ_CACHE, else $XDG_CACHE_HOME/speechmpq/kernels."""
    if os.environ.get("SPEECHMPQ_CACHE"):
        return Path(os.environ["SPEECHMPQ_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "speechmpq" / "kernels"


def _file_key(path: Path) -> str:
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _choice_key(choice: KernelChoice) -> str:
    text = json.dumps({x.layer: x.chosen for x in choice.layers}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class PreparedModel:
    """What ``prepare`` hands the session: a path or serialized bytes to load, and the choice."""

    source: str | bytes
    choice: KernelChoice
    cached: bool = False  # loaded a rewritten file from the cache


def _model_facts(path: Path, use_cache: bool) -> tuple[dict, list[LayerKernel], object]:
    """(the metadata the choice reads, the layers' facts, the loaded onnx model or None when both came
    from the cache). Raises ImportError without the onnx package on a cache miss."""
    cached = _cached_facts(path, use_cache)
    if cached is not None:
        return cached[0], cached[1], None
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    model = onnx.load(str(path), load_external_data=False)
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    if external:
        load_external_data_for_model(model, str(path.parent))
    metadata = {p.key: p.value for p in model.metadata_props if p.key in _METADATA_KEYS}
    facts = layer_facts(model) if "speechmpq.bitplan" in metadata else []
    metadata["speechmpq.bitplan"] = "yes" if "speechmpq.bitplan" in metadata else ""
    metadata["external_data"] = "yes" if external else ""
    _store_facts(path, metadata, facts, use_cache)
    return metadata, facts, model


_METADATA_KEYS = ("speechmpq.bitplan", "speechmpq.kernel_table", "speechmpq.accuracy_level")


def prepare(path: Path, cpu: CpuFacts, mode: str = "auto", accuracy_level: int | None = None,
            table_path: str | None = None, use_cache: bool = True) -> PreparedModel:
    """Choose each layer's kernel for ``cpu``; returns the model source to load (the file itself when
    nothing changes, a cached or in-memory rewrite otherwise). ``accuracy_level`` None: the model's
    recommendation (its metadata)."""
    check_mode(mode)
    stored = KernelChoice("nbits", cpu, "as stored", 0 if accuracy_level is None else accuracy_level)
    if mode == "nbits" or not _has_bitplan(path):  # nothing to choose: onnx never reads the file
        return PreparedModel(str(path), stored)
    try:
        metadata, facts, model = _model_facts(path, use_cache)
    except ImportError:
        stored.note = "the onnx package is not installed: layers run as stored (pip install onnx)"
        return PreparedModel(str(path), stored)
    if accuracy_level is None:
        level = metadata.get("speechmpq.accuracy_level", "0")
        accuracy_level = int(level) if level.isdigit() else 0
    choice = choose_kernels(facts, cpu, mode, accuracy_level, table_path,
                            metadata.get("speechmpq.kernel_table"))
    if not choice.rewritten:
        return PreparedModel(str(path), choice)
    if metadata.get("external_data"):  # a > 2 GB model: one serialized protobuf cannot hold it
        for layer in choice.layers:
            layer.chosen, layer.why = layer.stored, "as stored (weights in external data)"
        choice.note = "weights in external data files: layers run as stored"
        return PreparedModel(str(path), choice)
    target = kernel_cache() / f"{path.stem}-{_file_key(path)}-{_choice_key(choice)}.onnx"
    if use_cache and target.is_file():
        return PreparedModel(str(target), choice, cached=True)
    if model is None:
        import onnx

        model = onnx.load(str(path))
    rewrite(model, choice)
    data = model.SerializeToString()
    del model
    if use_cache and _write_cache(target, data):
        return PreparedModel(str(target), choice)
    return PreparedModel(data, choice)


def _has_bitplan(path: Path) -> bool:
    """Whether the file's metadata holds a speechmpq bit plan (its key's bytes occur in the file; read
    through mmap, nothing loaded)."""
    import mmap

    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(b"speechmpq.bitplan") >= 0


def _facts_path(path: Path) -> Path:
    return kernel_cache() / f"{path.stem}-{_file_key(path)}.json"


def _cached_facts(path: Path, use_cache: bool) -> tuple[dict, list[LayerKernel]] | None:
    if not use_cache:
        return None
    try:
        data = json.loads(_facts_path(path).read_text())
        if data.get("format") != FACTS_FORMAT:
            return None
        return data["metadata"], [LayerKernel(**entry) for entry in data["layers"]]
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _store_facts(path: Path, metadata: dict, facts: list[LayerKernel], use_cache: bool) -> None:
    if use_cache:
        layers = [{**asdict(x), "chosen": "", "why": ""} for x in facts]
        text = json.dumps({"format": FACTS_FORMAT, "metadata": metadata, "layers": layers})
        _write_cache(_facts_path(path), text.encode())


def _write_cache(target: Path, data: bytes) -> bool:
    """Write atomically into the cache; False where the cache cannot be written (read-only home)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)
        return True
    except OSError:
        return False


def check_mode(mode: str) -> str:
    if mode not in KERNEL_MODES:
        raise ModelError(f"--kernels must be one of {', '.join(KERNEL_MODES)}, not {mode!r}")
    return mode
