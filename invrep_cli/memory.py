"""Peak memory of a span of work on CPU, for the bench's memory column.

``CpuPeak`` reports the peak RSS the span added: VmHWM is reset by writing 5 to
/proc/self/clear_refs, then VmHWM - VmRSS(at reset). Where clear_refs is not writable,
ru_maxrss - VmRSS(before) is used when the process peak rose during the span (else no figure);
the method string it returns says which.
"""

from __future__ import annotations

import sys


def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_bytes() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    # kilobytes on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1.0 if sys.platform == "darwin" else 1024.0)


class CpuPeak:
    """Peak RSS added between start() and stop(), in bytes, and how it was measured."""

    def start(self) -> None:
        self.reset = _reset_peak_rss()
        self.rss0 = _proc_status_kb("VmRSS")
        self.maxrss0 = _maxrss_bytes()

    def stop(self) -> tuple[float | None, str]:
        hwm = _proc_status_kb("VmHWM")
        if self.reset and hwm is not None and self.rss0 is not None:
            return max(0, hwm - self.rss0) * 1024.0, "peak RSS added (VmHWM after clear_refs)"
        maxrss = _maxrss_bytes()
        if maxrss is None or self.maxrss0 is None or self.rss0 is None:
            return None, "no way to read peak RSS on this platform"
        if maxrss > self.maxrss0:
            # the process peak rose, so it happened during the run
            return maxrss - self.rss0 * 1024.0, "peak RSS added (ru_maxrss - VmRSS before)"
        return None, "ru_maxrss did not rise during the run (its peak was set earlier in the process)"
