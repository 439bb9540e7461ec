"""The CPU facts that decide onnxruntime's int8 and low-bit kernels, read the way MLAS reads them:
CPUID on x86 through numpy's runtime dispatch, the auxiliary vector's HWCAP bits on aarch64 (both are
what an emulator reports too, unlike /proc/cpuinfo). ``kernel_choice`` chooses each layer's kernel
from them."""

from __future__ import annotations

import ctypes
import platform
from dataclasses import dataclass
from pathlib import Path

# numpy's runtime-dispatch names -> /proc/cpuinfo spellings (speechmpq.machine.KERNEL_ISA_FLAGS)
_NUMPY_FLAGS = {"AVX2": "avx2", "AVX512F": "avx512f", "AVX512VNNI": "avx512_vnni", "ASIMDDP": "asimddp"}
# aarch64 HWCAP / HWCAP2 bits (linux arch/arm64/include/uapi/asm/hwcap.h)
_HWCAP = {"asimddp": (16, 1 << 20), "sve": (16, 1 << 22), "i8mm": (26, 1 << 13), "sme": (26, 1 << 23)}
# flags only /proc/cpuinfo names (numpy does not dispatch on them); trusted only where /proc/cpuinfo
# agrees with CPUID on AVX2 and AVX-512 (an emulator shows the host's /proc/cpuinfo)
_CPUINFO_ONLY = ("avx_vnni", "amx_int8")


@dataclass(frozen=True)
class CpuFacts:
    arch: str  # platform.machine(): x86_64, aarch64, ...
    isa: tuple[str, ...]  # the flags that decide onnxruntime's int8 and low-bit kernels
    source: str = "detected"  # how they were found ("detected", or "given" for fake facts in tests)

    @property
    def label(self) -> str:
        return f"{self.arch} ({', '.join(self.isa) or 'no int8 dot-product or AVX2 flags'})"


def _numpy_features() -> dict[str, bool]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_features__
    return dict(__cpu_features__)


def _cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith(("flags", "Features"))
            for flag in line.split(":", 1)[1].split()}


def _hwcaps() -> set[str]:
    try:
        getauxval = ctypes.CDLL(None).getauxval
    except (OSError, AttributeError):
        return set()
    getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
    return {flag for flag, (kind, bit) in _HWCAP.items() if getauxval(kind) & bit}


def detect_cpu() -> CpuFacts:
    """This CPU's kernel-relevant flags, as onnxruntime sees them."""
    arch = platform.machine()
    features = _numpy_features()
    isa = {flag for name, flag in _NUMPY_FLAGS.items() if features.get(name)}
    if arch in ("aarch64", "arm64"):
        isa |= _hwcaps()
    else:
        cpuinfo = _cpuinfo_flags()
        if {"avx2", "avx512f"} & cpuinfo == {"avx2", "avx512f"} & isa:
            isa |= {flag for flag in _CPUINFO_ONLY if flag in cpuinfo}
    return CpuFacts(arch, tuple(sorted(isa)))
