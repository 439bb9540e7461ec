"""``export_onnx``: a model directory (float or quantized) or a preset shape -> one self-describing .onnx.

    float dir          -> FP32 graph                     (speechmpq.weights = "fp32")
    quantized dir      -> weight-only QDQ at plan bits   ("mpq", or "uniform-N" for uniform plans)
    float + plan       -> the plan applied by round-to-nearest, then as above
    FP32 graph + peer  -> onnxruntime's own quantizers   ("ort-int8-dynamic", "ort-int4-rtn")
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import onnx
from onnx import helper, version_converter

from speechmpq.audio import SAMPLE_RATE
from speechmpq.errors import ModelError, SpeechmpqError
from speechmpq.export.config import ExportConfig
from speechmpq.export.fp32 import FP32_OPSET, export_fp32
from speechmpq.export.qdq import QuantizedWeight, apply_quantized_weights, minimum_opset
from speechmpq.export.quiet import errors_only
from speechmpq.export.save import save_checked
from speechmpq.export.source import LoadedSource, Source, load_source
from speechmpq.onnx_metadata import model_metadata, set_metadata


def _weights_label(plan: dict | None, peer: str | None) -> str:
    if peer:
        return peer
    if plan is None:
        return "fp32"
    if plan["method"] == "uniform":
        searched = [e["bits"] for e in plan["layers"].values() if e.get("searched", True)]
        return f"uniform-{searched[0]}" if searched else "uniform"
    return "mpq"


def _set_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    if opset != FP32_OPSET:
        model = version_converter.convert_version(model, opset)
    # IR 10 is the first with INT4 and node metadata_props; INT2 needs the IR of opset 25.
    needed = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    model.ir_version = max(model.ir_version, needed, 10 if opset >= 21 else 0)
    return model


def export_onnx(source: Source, out: Path, cfg: ExportConfig, progress: bool = True) -> dict:
    """Export ``source`` to ``out``; returns a summary (files, bytes, per-layer records, timings).
    ``progress=False``: nothing but errors reaches the terminal."""
    started = time.time()
    say = print if progress else (lambda *a, **k: None)
    out = Path(out)
    with nullcontext() if progress else errors_only():
        loaded = load_source(source)
        _check_ctc_head(loaded)
        no_cache = getattr(loaded.model.config, "frontend_cache_off_reason", None)
        if cfg.frontend_cache and no_cache:
            cfg = dataclasses.replace(cfg, frontend_cache=False)
            say(f"front-end cache off: {no_cache}")
        weights = loaded.weights + _other_weights(loaded, cfg)
        say(f"exporting {loaded.model.config.model_type} ({_parameters(loaded.model) / 1e6:.1f} M "
            f"parameters) with the {cfg.exporter} exporter ...")
        graph, opset = _fp32_graph(loaded.model, weights, cfg)
        level = cfg.accuracy_level or 0
        records = apply_quantized_weights(graph, weights, cfg.block_size, cfg.min_container_bits)
        label = _weights_label(loaded.plan, source.peer)
        extra = _export_metadata(cfg, bool(loaded.weights), level)
        if source.peer is not None:
            from speechmpq.export.peers import quantize_peer

            graph = quantize_peer(graph, source.peer, level)
        set_metadata(graph, model_metadata(loaded.model.config, loaded.vocab, loaded.do_normalize, cfg,
                                           label, loaded.plan, extra))
        files, file_bytes = _save(graph, out, cfg, loaded.do_normalize)
    summary = {
        "out": str(out), "files": [str(f) for f in files], "bytes": file_bytes, "weights": label,
        "opset": opset, "exporter": cfg.exporter, "config": cfg.to_dict(),
        "parameters": int(_parameters(loaded.model)),
        "average_bits": loaded.plan["average_bits"] if loaded.plan else None, "layers": records,
        "seconds": round(time.time() - started, 2),
    }  # fmt: skip
    if loaded.plan is not None:
        summary["size"] = size_accounting(loaded.model, loaded.plan, records, file_bytes)
    say(f"wrote {out} ({file_bytes / 1e6:.2f} MB, {label}, opset {opset}) in {summary['seconds']:.0f} s")
    return summary


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_ctc_head(loaded: LoadedSource) -> None:
    """The metadata describes the output: one token per logit, and the blank."""
    config = loaded.model.config
    if len(loaded.vocab) != config.vocab_size:
        raise ModelError(f"vocabulary has {len(loaded.vocab)} tokens but the model outputs "
                         f"{config.vocab_size}")
    if config.pad_token_id is None:
        raise ModelError("the model config has no pad_token_id (the CTC blank); cannot describe its output")


def _other_weights(loaded: LoadedSource, cfg: ExportConfig) -> list[QuantizedWeight]:
    """With ``others="int8"`` and a plan: int8 weights for every layer outside it (the model's float
    weights set to match), else none."""
    from speechmpq.export.plans import other_int8_weights

    if cfg.others != "int8" or not loaded.weights:
        return []
    return other_int8_weights(loaded.model, {w.name for w in loaded.weights})


def _fp32_graph(model, weights: list[QuantizedWeight], cfg: ExportConfig) -> tuple[onnx.ModelProto, int]:
    """(the traced FP32 graph at the opset that holds ``weights``' containers, that opset)."""
    graph = export_fp32(model, cfg)
    needed = minimum_opset(weights, cfg.min_container_bits)
    opset = cfg.opset or needed
    if opset < needed:
        raise SpeechmpqError(f"opset {opset} cannot hold these weights; {needed} or later is needed "
                             f"(INT4/INT8 block scales: 21, INT2: 25)")
    return _set_opset(graph, opset), opset


def _export_metadata(cfg: ExportConfig, planned: bool, level: int) -> dict:
    """The export's own speechmpq.* metadata entries (beside the model's, see onnx_metadata)."""
    extra = {
        "speechmpq.others": cfg.others if planned else "fp32",
        "speechmpq.block_size": cfg.block_size,
        "speechmpq.exporter": cfg.exporter,
        "speechmpq.min_container_bits": cfg.min_container_bits,
        "speechmpq.accuracy_level": level,
    }
    if cfg.kernel_table not in ("default", "none"):
        # measured kernel timings travel with the file; the runtime uses them on a CPU of the same
        # class (runtime/kernel_choice.py)
        from speechmpq.kernel_table import embedded_table, load_table

        extra["speechmpq.kernel_table"] = embedded_table(load_table(cfg.kernel_table))
    return extra


def _save(graph: onnx.ModelProto, out: Path, cfg: ExportConfig, do_normalize: bool) -> tuple[list[Path], int]:
    """(files written, bytes of the model's own files); with ``cfg.audio_graph`` also NAME.audio.onnx."""
    files = save_checked(graph, out, cfg.external_data_threshold)
    file_bytes = sum(f.stat().st_size for f in files)
    if cfg.audio_graph:
        from speechmpq.export.audio_graph import audio_bytes_graph

        audio_model = audio_bytes_graph(graph, SAMPLE_RATE, do_normalize)
        files += save_checked(audio_model, out.with_suffix(".audio.onnx"), cfg.external_data_threshold)
    return files, file_bytes


def size_accounting(model, plan: dict, records: list[dict], file_bytes: int) -> dict:
    """Actual bytes vs the plan's: planned weights at their bits, everything else fp32."""
    planned = {r["layer"]: r for r in records}
    plan_weight_bytes = sum(e["bits"] * math.prod(e["shape"]) / 8 for e in plan["layers"].values())
    container_bytes = sum(r["weight_bytes"] for r in records if r["layer"] in plan["layers"])
    scale_bytes = sum(r["scale_bytes"] for r in records)
    others_int8 = sum(r["weight_bytes"] for name, r in planned.items() if name not in plan["layers"])
    others_replaced = sum(r["replaced_float_bytes"] for n, r in planned.items() if n not in plan["layers"])
    float_bytes = (sum(p.numel() for p in model.parameters()) - sum(
        math.prod(e["shape"]) for e in plan["layers"].values())) * 4 - others_replaced
    computed = plan_weight_bytes + float_bytes + others_int8
    return {
        "plan_weight_bytes": round(plan_weight_bytes), "container_weight_bytes": container_bytes,
        "container_padding_bytes": round(container_bytes - plan_weight_bytes), "scale_bytes": scale_bytes,
        "other_int8_bytes": others_int8, "float_parameter_bytes": float_bytes,
        "computed_bytes": round(computed), "file_bytes": file_bytes,
        "overhead_bytes": round(file_bytes - computed),
        "overhead_fraction": round((file_bytes - computed) / computed, 4),
    }  # fmt: skip


def write_summary(summary: dict, path: Path) -> None:
    """Write ``export_onnx``'s summary as JSON, atomically."""
    from speechmpq.files import atomic_write

    atomic_write(path, json.dumps(summary, indent=1) + "\n")
