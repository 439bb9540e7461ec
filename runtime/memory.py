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
