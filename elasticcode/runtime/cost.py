"""What one call cost: the CPU seconds and the peak memory of its function, measured in the pool process.

CPU: `time.process_time()` before and after the function (user + system time of the pool process,
all its threads). Pool processes run one call at a time, so the difference is the call's.

Peak memory: the kernel keeps one high-water mark of resident memory per process (`VmHWM`, what
`getrusage` reports as `ru_maxrss`); it never comes down by itself, so after one big call every
later call would look as big. Writing `5` to `/proc/self/clear_refs` resets the mark to the current
resident size (Linux >= 4.0), so the mark read after the call is the peak *during* the call. On this
kernel `ru_maxrss` follows the reset, which is checked once per process; the read then costs one
`getrusage` (about 1 µs) instead of parsing `/proc/self/status` (about 20 µs). Where `clear_refs`
cannot be written (not Linux, a locked-down /proc), `ru_maxrss` after the call is recorded: exact
when the call raised the process's mark, an upper bound otherwise.

The figure is the pool process's resident size at its peak, so it includes the worker's baseline
(the interpreter, Celery, the processor's imports: some tens of MB); compare calls of one socket
to find the ones that need memory.
"""

from __future__ import annotations

import mmap
import os
import resource
import sys
import time

CLEAR_REFS = "/proc/self/clear_refs"
STATUS = "/proc/self/status"
RESET_HWM = b"5"  # "reset the peak resident set size" (Documentation/filesystems/proc.rst)
KIB = 1024 if sys.platform != "darwin" else 1  # ru_maxrss is in KiB on Linux, bytes on macOS
PROBE_BYTES = 16 << 20


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB


class CostMeter:
    """One per worker; opens its /proc files lazily in each (forked) pool process."""

    def __init__(self) -> None:
        self._pid = -1
        self._clear: int | None = None  # fd of /proc/self/clear_refs of this process, or None
        self._status: int | None = None  # fd of /proc/self/status, when ru_maxrss does not follow the reset
        self.mode = "unknown"

    def _open(self) -> None:
        """In this process: can the mark be reset, and does ru_maxrss follow it?"""
        self._pid, self._clear, self._status = os.getpid(), None, None
        try:
            self._clear = os.open(CLEAR_REFS, os.O_WRONLY | os.O_CLOEXEC)
            os.write(self._clear, RESET_HWM)
            status = os.open(STATUS, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            if self._clear is not None:
                os.close(self._clear)
                self._clear = None
            self.mode = "rusage"
            return
        # Does ru_maxrss come down with the reset? Raise the mark by a mapping given back at once,
        # reset, look: one probe per process, a few ms.
        probe = mmap.mmap(-1, PROBE_BYTES)
        for i in range(0, PROBE_BYTES, mmap.PAGESIZE):
            probe[i] = 1
        probe.close()
        raised = _maxrss()
        os.write(self._clear, RESET_HWM)
        if _maxrss() < raised - PROBE_BYTES // 2:
            os.close(status)
            self.mode = "clear_refs+rusage"
        else:
            self._status, self.mode = status, "clear_refs+status"

    def start(self) -> float:
        """Before the function: reset the memory mark; the CPU clock to subtract later."""
        if self._pid != os.getpid():
            self._open()
        if self._clear is not None:
            try:
                os.write(self._clear, RESET_HWM)
            except OSError:
                self._clear, self.mode = None, "rusage"
        return time.process_time()

    def stop(self, cpu_started: float) -> tuple[float, int]:
        """After the function: (CPU seconds, peak resident bytes)."""
        cpu = time.process_time() - cpu_started
        peak = _status_hwm(self._status) if self._status is not None else _maxrss()
        return round(cpu, 6), peak


def _status_hwm(fd: int) -> int:
    data = os.pread(fd, 4096, 0)
    at = data.index(b"VmHWM:")
    return int(data[at + 6:data.index(b"kB", at)]) * 1024


__all__ = ["CostMeter"]
