"""The systems the harness compares. Each module has a `System` with the same interface:

    start(workers) -> dict      bring it up with `workers` processes (plus what P3's 1-process run needs);
                                returns what to record about it (version, settings)
    roundtrip()                 one no-op call, sent and waited for (P1)
    burst(n)                    n no-op calls sent, then all gathered (P2)
    cpu(n_calls, procs, work)   n_calls of spin(work) sent at once to a pool of `procs` processes
                                (1 or workers), then gathered (P3)
    stop()                      tear down everything start() started

The harness times these calls itself (bench.driver), so every system is timed the same way.
ElasticCode's System also has the measurements only it can make (P4's join, P5, P7); it and the raw
Celery lines have `plug_hop(count)`, P4's hop (a call's result sent on to the next call).
"""

from __future__ import annotations

import importlib.util
import statistics
from dataclasses import dataclass

HOP_PAUSE = 0.1  # seconds after a plugged call's source returns, before the next call (P4)


@dataclass(frozen=True)
class Entry:
    name: str  # --only NAME, the row's key in the JSON
    label: str  # the row in the table
    module: str  # bench.systems.<module>
    requires: tuple[str, ...]  # importable packages, else the row says "not installed"
    needs_stack: bool = False  # runs on (or against) the embedded stack's Redis
    options: tuple[tuple[str, str], ...] = ()


SYSTEMS = (
    Entry("elasticcode", "ElasticCode (public API, provenance on)", "elasticcode", ("elasticcode", "git"), True),
    Entry("celery", "Celery, durable settings", "raw_celery", ("celery",), True, (("settings", "durable"),)),
    Entry("celery-ec", "Celery, ElasticCode's app settings", "raw_celery", ("celery", "elasticcode"), True,
          (("settings", "elasticcode"),)),
    Entry("dask", "Dask distributed (LocalCluster, processes)", "dask_", ("dask", "distributed")),
    Entry("ipyparallel", "ipyparallel (engines)", "ipyparallel_", ("ipyparallel",)),
    Entry("parsl", "Parsl (HTEX, monitoring on)", "parsl_", ("parsl", "sqlalchemy")),
)
BY_NAME = {entry.name: entry for entry in SYSTEMS}
BASELINE = "celery"  # ratios are to raw durable Celery


def missing(entry: Entry) -> list[str]:
    """The packages of `entry` that are not installed."""
    return [name for name in entry.requires if importlib.util.find_spec(name) is None]


def summary_ms(seconds: list[float]) -> dict:
    """Median, p95 (in ms) and count of some durations in seconds."""
    ordered = sorted(seconds)
    return {"median": statistics.median(ordered) * 1000, "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000,
            "n": len(ordered)}


class System:
    """The interface (see the module's docstring)."""

    def __init__(self, work_dir, **options):
        self.work_dir = work_dir
        self.options = options

    def start(self, workers: int) -> dict:
        raise NotImplementedError

    def roundtrip(self) -> None:
        raise NotImplementedError

    def burst(self, n: int) -> None:
        raise NotImplementedError

    def cpu(self, n_calls: int, procs: int, work: int) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError
