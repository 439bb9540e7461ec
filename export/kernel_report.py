"""The kernel table as markdown: per shape, every kernel's median latency and its ratio to fp32."""

from __future__ import annotations

from speechmpq.kernel_table import parse_kernel


def _cell(entry: dict) -> str:
    spread = f"[{entry['min_ms']:.3f}, {entry['max_ms']:.3f}]"
    return f"{entry['median_ms']:.3f} {spread} ({entry['ratio_to_fp32']:.2f}x)"


def markdown(table: dict) -> str:
    m = table["machine"]
    lines = [
        f"# Kernel table: {table['preset']} shapes, {table['threads']} thread(s)",
        "",
        f"Machine: {m['arch']}, {m['cpu']}, {m['cores']} cores, ISA {', '.join(m['isa']) or 'n/a'}; "
        f"onnxruntime {m['onnxruntime']}; {m['date']}.",
        "",
        f"Command: `{table.get('command', '')}`",
        "",
        f"Rows per call: {table['rows']} frames (the {table['window_ms']} ms streaming window). Each cell: "
        f"median ms per call over {table['repetitions']} interleaved rounds [min, max] (ratio to fp32 "
        f"in the same round). `acc` is onnxruntime's MatMulNBits accuracy level (session option; "
        f"0: float activations, 4: int8 activations).",
        "",
    ]
    for shape in table["linear"]:
        lines += [
            f"## Linear {shape['k']} x {shape['n']} ({', '.join(shape['kinds'])}; "
            f"{shape['per_block']} layers in the model)",
            "",
            "| kernel | bits stored | acc | ms per call |",
            "|---|---:|---:|---|",
        ]
        for entry in sorted(shape["kernels"], key=lambda e: e["median_ms"]):
            level = entry["accuracy_level"] if entry["kernel"].startswith("nbits") else "-"
            lines.append(
                f"| {entry['kernel']} | {parse_kernel(entry['kernel'])[1]} | {level} | {_cell(entry)} |"
            )
        lines.append("")
    lines += [
        "## Fastest kernel per stored bit width (whole model's searched layers, ms per window)",
        "",
        "| bits | acc 0 | acc 4 |",
        "|---:|---|---|",
    ]
    for bits, levels in sorted(table["best"].items(), key=lambda item: int(item[0])):
        cells = [
            f"{levels[str(a)]['kernel']}: {levels[str(a)]['model_ms']:.1f}" if str(a) in levels else "-"
            for a in (0, 4)
        ]
        lines.append(f"| {bits} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "## Conv front end (per layer; `window`: the whole streaming window, `cached`: the new "
        "samples the front-end cache leaves)",
        "",
        "| layer | input | C_in -> C_out, k/s | length | fp32 | int8-dynamic (ConvInteger) |",
        "|---:|---|---|---:|---|---|",
    ]
    for conv in table["conv"]:
        by = {e["kernel"]: e for e in conv["kernels"]}
        lines.append(
            f"| {conv['layer']} | {conv['input']} | {conv['channels_in']} -> {conv['channels_out']}, "
            f"{conv['width']}/{conv['stride']} | {conv['length']} | {_cell(by['fp32'])} | "
            f"{_cell(by['int8-dynamic'])} |"
        )
    totals = {}
    for conv in table["conv"]:
        for e in conv["kernels"]:
            key = (conv["input"], e["kernel"])
            totals[key] = totals.get(key, 0.0) + e["median_ms"]
    lines += [
        "",
        "Conv stack totals (ms): " + ", ".join(f"{i} {k} {v:.2f}" for (i, k), v in sorted(totals.items())),
        "",
    ]
    return "\n".join(lines)
