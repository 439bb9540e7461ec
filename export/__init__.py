"""speechmpq.export: a model directory (float or quantized) or a preset shape -> one self-describing .onnx.

    from speechmpq.export import ExportConfig, Source, export_onnx, write_summary

    summary = export_onnx(Source(model_dir="models/demo-mpq"), "out/demo-mpq.onnx", ExportConfig())
    write_summary(summary, "out/demo-mpq.json")

Callers import every public name from here. Each is loaded on first use (PEP 562): importing this
package loads neither torch nor onnx until a name is used.
"""

from __future__ import annotations

from speechmpq.lazy_face import lazy_face

# the module that defines each public name, grouped by concept
_EXPORTS = {
    # the verb, what it exports, its settings, and its summary
    "speechmpq.export.api": ("export_onnx", "write_summary"),
    "speechmpq.export.source": ("Source",),
    "speechmpq.export.config": ("ExportConfig", "PEERS"),
    # ``speechmpq kernels``: time every onnxruntime kernel on this machine, the table export reads
    "speechmpq.export.kernels": ("measure_kernels", "write_kernel_table"),
}
__all__, __getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
