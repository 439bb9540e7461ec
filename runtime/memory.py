"""This process's memory: current RSS and its high-water mark (Linux ``/proc/self/status``).

``VmHWM`` is the peak RSS of this process image; ``ru_maxrss`` is beside it as a cross-check (it is
inherited across fork/exec, so a child that starts from a large parent reports the parent's peak).
Where there is no ``/proc`` (macOS, a chroot without it), RSS reads 0 and the peak falls back to
``ru_maxrss``.
"""

from __future__ import annotations

import resource
import sys


def _status_kib(field: str) -> int:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_memory() -> dict:
    """``rss_mib``, ``hwm_mib`` (peak) and ``ru_maxrss_mib``."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    maxrss_mib = maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024  # bytes there
    hwm = _status_kib("VmHWM") / 1024
    return {"rss_mib": _status_kib("VmRSS") / 1024, "hwm_mib": hwm or maxrss_mib, "ru_maxrss_mib": maxrss_mib}


# glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
LONG_RUN_MMAP_THRESHOLD = 128 * 1024


def steady_allocator(threshold: int = LONG_RUN_MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold, so that memory of a long-running process does not creep up.

    glibc raises its mmap threshold every time a large block is freed (up to 32 MiB); after that,
    the audio buffers and onnxruntime tensors of every chunk come from the heap, which fragments and
    is rarely given back, so RSS wanders upwards over hours of streaming. A fixed threshold (the
    same as ``MALLOC_MMAP_THRESHOLD_=131072``) keeps large blocks in mmap, returned on free. The
    price is some latency (more page faults); results/soak.md measures both. It changes the whole
    process's allocator, so the library never calls it by itself: ``speechmpq serve``, ``speechmpq
    demo --mic`` and the soak do; an application embedding the runtime may. Returns False where it
    does not apply: not glibc, MALLOC_MMAP_THRESHOLD_ already set by the user, or
    SPEECHMPQ_STEADY_ALLOCATOR=0 (keep glibc's default).
    """
    import ctypes
    import os

    if (os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("SPEECHMPQ_STEADY_ALLOCATOR") == "0"
            or not sys.platform.startswith("linux")):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
