"""The kernel table contract: kernel ids, the table's reader and the rules that pick a kernel per layer.

The writer is ``speechmpq kernels`` (``export/kernels.py``, which times every kernel on this
machine); the runtime reads a table (or the built-in rules) when it loads a model to pick each layer's
kernel for the CPU it runs on (``runtime/kernel_choice.py``), ``quantize --cost latency`` to price
each candidate bit width. ``export --kernel-table`` embeds a table in the .onnx metadata
(``embedded_table``); the runtime uses it on CPUs of the class it was measured on (``same_class``).
Kernel ids: ``fp32``, ``int8-dynamic`` (``-from2``/``-from4`` when the file
stores fewer bits), ``nbits{B}-block{S}`` (+ an accuracy level, a session option kept beside the id).

``choose``: per layer, the fastest kernel that stores exactly the layer's bits. For a layer of shape
(K, N) at b bits (stored in the container ``bitplan.container_bits`` gives it) the candidates are the table's
kernels for that shape storing that many bits: ``nbits{b}-block{S}`` at each block size, and for
8 bits also ``int8-dynamic``. onnxruntime's MatMulNBits accuracy level is one session option for
the whole model, so the level is chosen once (the least total predicted time over all layers, unless
given) and each layer then takes its fastest candidate at that level. Shapes missing from the table
take the kernel that is fastest over the whole table's model at those bits.

The int8-dynamic kernels are left out for a layer whose integer codes exceed +-64 when the measured
CPU lacks VNNI: onnxruntime's AVX2 uint8 x int8 GEMM overflows int16 there (``saturation_free``).

Built-in defaults (``kernel_defaults.json``) hold that per-bits rule for the CPU families measured;
where none was measured the map keeps MatMulNBits at the export's block size.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from speechmpq.errors import SpeechmpqError
from speechmpq.machine import cpu_isa

FORMAT = "speechmpq-kernels/1"  # the table's format (written by speechmpq kernels)
FP32, INT8_DYNAMIC = "fp32", "int8-dynamic"
NBITS_BITS, NBITS_BLOCKS, ACCURACY_LEVELS = (2, 4, 8), (32, 64, 128, 256), (0, 4)


def nbits_id(bits: int, block: int) -> str:
    return f"nbits{bits}-block{block}"


def int8_dynamic_id(bits: int) -> str:
    return INT8_DYNAMIC if bits == 8 else f"{INT8_DYNAMIC}-from{bits}"


def parse_kernel(kernel: str) -> tuple[str, int, int | None]:
    """kernel id -> (kind, stored bits, block size or None)."""
    if kernel == FP32:
        return FP32, 32, None
    if kernel == INT8_DYNAMIC:
        return INT8_DYNAMIC, 8, None
    if kernel in (f"{INT8_DYNAMIC}-from2", f"{INT8_DYNAMIC}-from4"):
        return INT8_DYNAMIC, int(kernel[-1]), None
    if kernel.startswith("nbits") and "-block" in kernel:
        bits, block = kernel[5:].split("-block")
        return "nbits", int(bits), int(block)
    raise ValueError(f"unknown kernel {kernel!r}")



# On x86 without VNNI, onnxruntime's uint8 x int8 GEMM (MatMulInteger, DynamicQuantizeMatMul) sums
# pairs of products in int16 (vpmaddubsw) and saturates once |weight code| > 64: measured 27 % error
# for full-range 8-bit codes, exact up to the activations' rounding for codes within +-64.
SATURATION_FREE_CODE = 64
VNNI_ISA = ("avx512_vnni", "avx_vnni", "amx_int8")


def saturation_free(max_code: int, isa: list[str] | None, arch: str = "x86_64") -> bool:
    """Whether the int8-dynamic kernels compute a layer with these codes without int16 overflow on a
    CPU of this ``arch`` and ``isa``. Only x86 without VNNI/AMX saturates: onnxruntime's aarch64
    kernels widen u8 x s8 products to 16 bits (at most 255 x 128, no overflow) or use dot products."""
    if arch not in ("x86_64", "AMD64", "i686", "x86"):
        return True
    return max_code <= SATURATION_FREE_CODE or any(flag in (isa or []) for flag in VNNI_ISA)



def levels_of(entry: dict) -> tuple[int, ...]:
    """Accuracy levels a table entry holds at: the level is a MatMulNBits session option, so an
    nbits entry holds at its own, the other kernels run alike at any level."""
    return (entry["accuracy_level"],) if entry["kernel"].startswith("nbits") else ACCURACY_LEVELS


def level_totals(table: dict) -> dict[int, dict[int, dict[str, float]]]:
    """accuracy level -> stored bits -> kernel -> total ms over the table's model (each shape
    weighted by how many layers have it)."""
    totals: dict[int, dict[int, dict[str, float]]] = {}
    for shape in table["linear"]:
        for entry in shape["kernels"]:
            bits = parse_kernel(entry["kernel"])[1]
            for level in levels_of(entry):
                per = totals.setdefault(level, {}).setdefault(bits, {})
                per[entry["kernel"]] = per.get(entry["kernel"], 0.0) + entry["median_ms"] * shape["per_block"]
    return totals


def best_by_bits(table: dict) -> dict:
    """For each stored bit width: at each accuracy level, the kernel with the least total time over
    the model's layers, and that total in ms."""
    best: dict[str, dict] = {}
    for level, per_bits in sorted(level_totals(table).items()):
        for bits, totals in sorted(per_bits.items()):
            if bits == 32 and level:
                continue
            kernel = min(totals, key=totals.get)
            entry = {"kernel": kernel, "model_ms": round(totals[kernel], 3)}
            best.setdefault(str(bits), {})[str(level)] = entry
    return best



DEFAULTS = Path(__file__).with_name("kernel_defaults.json")


def int8_class(arch: str, isa: list[str] | tuple[str, ...]) -> str:
    """The CPU class that decides which int8 kernels are exact and fast: ``ARCH-vnni`` (int8 dot
    products: VNNI/AMX on x86; every aarch64 CPU computes u8 x s8 without int16 overflow) or ``ARCH``."""
    return f"{arch}-vnni" if any(flag in isa for flag in VNNI_ISA) else arch


def same_class(table: dict, arch: str, isa: list[str] | tuple[str, ...]) -> bool:
    """Whether ``table`` was measured on a CPU of this class (its rankings apply here)."""
    machine = table.get("machine", {})
    return int8_class(machine.get("arch", ""), machine.get("isa", [])) == int8_class(arch, isa)


def embedded_table(table: dict) -> str:
    """``table`` as the compact JSON export writes into the .onnx metadata (``speechmpq.kernel_table``)."""
    return json.dumps({key: table[key] for key in ("format", "preset", "machine", "linear") if key in table},
                      separators=(",", ":"))


def read_embedded_table(text: str) -> dict | None:
    """The table in a model's metadata; None when it is not a valid kernel table."""
    try:
        table = json.loads(text)
    except ValueError:
        return None
    valid = (isinstance(table, dict) and table.get("format") == FORMAT
             and isinstance(table.get("linear"), list))
    return table if valid and isinstance(table.get("machine"), dict) else None


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
    products and such a rule was measured, else ``ARCH``), or None where nothing was measured.
    The rule carries the ISA it is applied to (the int8-dynamic guard reads it), not the ISA of the
    machine it was measured on."""
    rules = json.loads(DEFAULTS.read_text())
    arch = arch or platform.machine()
    isa = cpu_isa() if isa is None else isa
    if any(flag in isa for flag in VNNI_ISA) and f"{arch}-vnni" in rules:
        rule = rules[f"{arch}-vnni"]
    elif arch in rules:
        rule = rules[arch]
    else:
        return None
    return {**rule, "isa": list(isa), "name": f"{arch}-vnni" if rule is rules.get(f"{arch}-vnni") else arch}


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
    layers: list[dict], table: dict | None, rules: dict | None, accuracy_level: int | None, block_size: int,
    cpu: tuple[str, list[str]] | None = None, int8_activations: bool = True,
) -> tuple[int, dict[str, dict]]:
    """``layers``: dicts with name, container (stored bits), k, n, max_code (largest |integer code|;
    0 if unknown). ``cpu``: (arch, ISA flags) of the CPU the layers will run on (the int8-dynamic
    guard); None: the machine the table or rule was measured on. ``int8_activations=False`` leaves
    out the int8-dynamic kernels (they quantize activations to int8). Returns (accuracy level,
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
    arch, isa = cpu if cpu is not None else ((table or {}).get("machine", {}).get("arch", "x86_64"),
                                             rules.get("isa", []))
    levels = [accuracy_level] if accuracy_level is not None else [0, 4]
    plans = {}
    for level in levels:
        choice, total, missing = {}, 0.0, 0
        for layer in layers:
            safe = int8_activations and saturation_free(layer.get("max_code", 0), isa, arch)
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
                    kernel = rules.get("saturating_8bit") if layer["container"] == 8 else None
                if (
                    kernel
                    and parse_kernel(kernel)[0] != INT8_DYNAMIC
                    and rules.get("accuracy_level") != level
                ):
                    kernel = None  # the rule was measured at another level
                stored = f"nbits{layer['container']}-block{layer.get('block_size', block_size)}"
                kernel, predicted = kernel or stored, None
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
