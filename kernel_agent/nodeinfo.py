"""This machine's figures for the node row: CPUs, memory, disk, load."""

from __future__ import annotations

import os

import psutil


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def stats(path: str = "/") -> dict:
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(path)
    return {
        "cpus": cpu_count(),
        "memsize": memory.total,
        "freemem": memory.available,
        "disksize": disk.total,
        "diskfree": disk.free,
        "cpuload": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
