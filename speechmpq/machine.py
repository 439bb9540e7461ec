"""Machine facts: the CPU, its instruction-set flags and the library versions a figure was made with.

Every results file and kernel table records these (``machine_facts``); the kernel rules read the ISA
flags (``cpu_isa``) because onnxruntime's int8 and low-bit kernels depend on them. Pure Python: reads
``/proc/cpuinfo`` and package metadata, imports no library it reports on.
"""

from __future__ import annotations

import datetime
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# The flags that decide onnxruntime's int8 and low-bit kernels (x86: AVX2, AVX-512, VNNI, AMX;
# aarch64: dot product, i8mm), as /proc/cpuinfo spells them.
KERNEL_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def cpu_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        return names[0] if names else cpu
    except OSError:
        return cpu


def cpu_isa() -> list[str]:
    """The instruction-set flags that decide onnxruntime's int8 and low-bit kernels on this CPU."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return sorted(flag for flag in KERNEL_ISA_FLAGS if f" {flag}" in text)


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:  # not installed: the row that needs it says so
        return None


def machine_facts() -> dict:
    """CPU, cores, Python, OS, library versions and the time: what a results file records."""
    versions = {name: package_version(name) for name in ("onnxruntime", "numpy", "torch")}
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}", "versions": versions,
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def kernel_machine() -> dict:
    """What a kernel table records of the machine it was measured on."""
    return {
        "arch": platform.machine(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "isa": cpu_isa(),
        "onnxruntime": package_version("onnxruntime"),
        "date": datetime.date.today().isoformat(),
    }
