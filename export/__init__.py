"""speechmpq.export: a model directory (float or quantized) or a preset shape -> one self-describing .onnx.

    from speechmpq.export import ExportConfig, Source, export_onnx, write_summary

    summary = export_onnx(Source(model_dir="models/demo-mpq"), "out/demo-mpq.onnx", ExportConfig())
    write_summary(summary, "out/demo-mpq.json")

Callers import every public name from here. Each is loaded on first use (PEP 562): importing this
package loads neither torch nor onnx until a name is used.
"""

from __future__ import annotations

import importlib

# the module that defines each public name, grouped by concept
_EXPORTS = {
    # the verb, what it exports, its settings, and its summary
    "speechmpq.export.api": ("export_onnx", "write_summary"),
    "speechmpq.export.source": ("Source",),
    "speechmpq.export.config": ("ExportConfig", "PEERS"),
    # ``speechmpq kernels``: time every onnxruntime kernel on this machine, the table export reads
    "speechmpq.export.kernels": ("measure_kernels", "write_kernel_table"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = list(_HOME)


def __getattr__(name: str):
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
