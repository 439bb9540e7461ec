"""Per layer, the fastest kernel that stores exactly the layer's bits, from a kernel table.

A table is what ``speechmpq kernels`` writes (``export/kernels.py``). For a layer of shape (K, N) at
b bits (stored in the container ``packing.container_bits`` gives it) the candidates are the table's
kernels for that shape storing that many bits: ``nbits{b}-block{S}`` at each block size, and for
8 bits also ``int8-dynamic``. onnxruntime's MatMulNBits accuracy level is one session option for
the whole model, so the level is chosen once (the least total predicted time over all layers, unless
given) and each layer then takes its fastest candidate at that level. Shapes missing from the table
take the kernel that is fastest over the whole table's model at those bits.

The int8-dynamic kernels are left out for a layer whose integer codes exceed +-64 when the measured
CPU lacks VNNI: onnxruntime's AVX2 uint8 x int8 GEMM overflows int16 there (kernel_graphs.py).

Built-in defaults (``kernel_defaults.json``) hold that per-bits rule for the CPU families measured;
where none was measured the map keeps MatMulNBits at the export's block size.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from speechmpq.errors import SpeechmpqError
from speechmpq.export.kernel_graphs import INT8_DYNAMIC, parse_kernel, saturation_free
from speechmpq.export.kernels import FORMAT, level_totals, levels_of

DEFAULTS = Path(__file__).with_name("kernel_defaults.json")


def load_table(path: str | Path) -> dict:
    path = Path(path)
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SpeechmpqError(f"{path}: cannot read the kernel table ({error})") from None
    if (
        not isinstance(table, dict)
        or table.get("format") != FORMAT
        or not isinstance(table.get("linear"), list)
    ):
        raise SpeechmpqError(f"{path}: not a speechmpq kernel table (write one with speechmpq kernels)")
    return table


def default_rules(arch: str | None = None, isa: list[str] | None = None) -> dict | None:
    """The built-in per-bits rule for this CPU family (``ARCH-vnni`` where the CPU has int8 dot
    products and such a rule was measured, else ``ARCH``), or None where nothing was measured."""
    from speechmpq.export.kernel_graphs import VNNI_ISA
    from speechmpq.export.kernels import cpu_isa

    rules = json.loads(DEFAULTS.read_text())
    arch = arch or platform.machine()
    isa = cpu_isa() if isa is None else isa
    if any(flag in isa for flag in VNNI_ISA) and f"{arch}-vnni" in rules:
        return rules[f"{arch}-vnni"]
    return rules.get(arch)


def rules_from_table(table: dict) -> dict:
    """The per-bits rule a table implies: the accuracy level, bits -> kernel, the best 8-bit kernel
    for codes int8-dynamic would saturate, the table's ISA flags and where it came from."""
    totals = level_totals(table)
    best = {}
    for level, per_bits in totals.items():
        chosen = {bits: min(kernels, key=kernels.get) for bits, kernels in per_bits.items() if bits <= 8}
        # levels are compared on the bit widths they cover first, then on total time
        best[level] = ((-len(chosen), sum(per_bits[b][k] for b, k in chosen.items())), chosen)
    level = min(best, key=lambda lvl: best[lvl][0])
    # the best 8-bit kernel for layers the int8-dynamic kernels would saturate
    safe = {k: v for k, v in totals[level].get(8, {}).items() if parse_kernel(k)[0] != INT8_DYNAMIC}
    return {
        "accuracy_level": level,
        "bits": {str(b): k for b, k in sorted(best[level][1].items())},
        "saturating_8bit": min(safe, key=safe.get) if safe else None,
        "isa": table["machine"].get("isa", []),
        "source": f"{table.get('preset')} table, {table['machine'].get('cpu')}, "
        f"{table['machine'].get('date')}",
    }


def choose(
    layers: list[dict], table: dict | None, rules: dict | None, accuracy_level: int | None, block_size: int
) -> tuple[int, dict[str, dict]]:
    """``layers``: dicts with name, container (stored bits), k, n, max_code (largest |integer code|;
    0 if unknown). Returns (accuracy level,
    name -> {"kernel", "block_size", "predicted_ms" (None without a table entry)})."""
    if table is not None:
        rules = rules_from_table(table)
    if rules is None:  # nothing measured here: MatMulNBits at the export's block size
        level = 0 if accuracy_level is None else accuracy_level
        return level, {
            layer["name"]: {
                "kernel": f"nbits{layer['container']}-block{block_size}",
                "block_size": block_size,
                "predicted_ms": None,
            }
            for layer in layers
        }
    shapes = {(s["k"], s["n"]): s["kernels"] for s in (table or {}).get("linear", [])}
    isa = rules.get("isa", [])
    levels = [accuracy_level] if accuracy_level is not None else [0, 4]
    plans = {}
    for level in levels:
        choice, total, missing = {}, 0.0, 0
        for layer in layers:
            safe = saturation_free(layer.get("max_code", 0), isa)
            candidates = [
                e
                for e in shapes.get((layer["k"], layer["n"]), [])
                if level in levels_of(e)
                and parse_kernel(e["kernel"])[1] == layer["container"]
                and (safe or parse_kernel(e["kernel"])[0] != INT8_DYNAMIC)
            ]
            if candidates:
                entry = min(candidates, key=lambda e: e["median_ms"])
                kernel, predicted = entry["kernel"], entry["median_ms"]
                total += predicted
            else:
                missing += (layer["k"], layer["n"]) in shapes
                kernel = rules["bits"].get(str(layer["container"]))
                if kernel and parse_kernel(kernel)[0] == INT8_DYNAMIC and not safe:
                    kernel = rules.get("saturating_8bit")
                if (
                    kernel
                    and parse_kernel(kernel)[0] != INT8_DYNAMIC
                    and rules.get("accuracy_level") != level
                ):
                    kernel = None  # the rule was measured at another level
                kernel, predicted = kernel or f"nbits{layer['container']}-block{block_size}", None
            choice[layer["name"]] = {
                "kernel": kernel,
                "block_size": parse_kernel(kernel)[2],
                "predicted_ms": predicted,
            }
        plans[level] = ((missing, total), choice)
    if table is None and accuracy_level is None:
        level = rules["accuracy_level"]
    else:
        level = min(plans, key=lambda lvl: plans[lvl][0])
    return level, plans[level][1]
