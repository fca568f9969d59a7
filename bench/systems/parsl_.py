"""Parsl: a HighThroughputExecutor with `workers` workers on this machine (LocalProvider, one block,
no scaling), and one with 1 worker for P3's single-process run; monitoring on (MonitoringHub, its
database in SQLite: every task's states and times, like ElasticCode's call records).

Parsl's per-task *resource* monitor (on by default) is off: it forks a process beside every task to
sample its CPU and memory, which costs about 55 ms per call here (P1 59 ms, P2 24 calls/s, against
3.9 ms and 460 calls/s with the task records alone); that is a profiler, not provenance."""

from __future__ import annotations

import os
import sqlite3
import sys

from . import System as Base

TIMEOUT = 600


class System(Base):
    def start(self, workers: int) -> dict:
        # Parsl starts its interchange and workers as scripts found on PATH (its venv's bin).
        bin_dir = os.path.dirname(sys.executable)
        if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        import benchfuncs
        import parsl
        from parsl.config import Config
        from parsl.executors import HighThroughputExecutor
        from parsl.monitoring import MonitoringHub
        from parsl.providers import LocalProvider

        def htex(label: str, n: int) -> HighThroughputExecutor:
            return HighThroughputExecutor(label=label, address="127.0.0.1", max_workers_per_node=n, cores_per_worker=1,
                                          provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
                                          worker_logdir_root=str(self.work_dir / "parsl-workers"))

        self.db = self.work_dir / "parsl-monitoring.db"
        config = Config(executors=[htex("htex_n", workers), htex("htex_1", 1)], strategy="none",
                        run_dir=str(self.work_dir / "parsl-runinfo"),
                        monitoring=MonitoringHub(hub_address="127.0.0.1", logging_endpoint=f"sqlite:///{self.db}",
                                                 resource_monitoring_enabled=False))
        self.dfk = parsl.load(config)
        self.echo = parsl.python_app(benchfuncs.echo, executors=["htex_n"])
        self.spin = {workers: parsl.python_app(benchfuncs.spin, executors=["htex_n"]),
                     1: parsl.python_app(benchfuncs.spin, executors=["htex_1"])}
        self.echo(0).result(timeout=120)
        self.spin[1](1).result(timeout=120)
        return {"version": parsl.__version__, "executor": f"HighThroughputExecutor(max_workers_per_node={workers}), "
                "LocalProvider, MonitoringHub (sqlite; resource monitoring off)"}

    def roundtrip(self) -> None:
        self.echo(1).result(timeout=TIMEOUT)

    def _gather(self, futures) -> None:
        for future in futures:
            future.result(timeout=TIMEOUT)

    def burst(self, n: int) -> None:
        self._gather([self.echo(i) for i in range(n)])

    def cpu(self, n_calls: int, procs: int, work: int) -> None:
        app = self.spin[procs]
        self._gather([app(work) for _ in range(n_calls)])

    def monitored_tasks(self) -> int:
        """Tasks in the monitoring database (proof that monitoring was on)."""
        with sqlite3.connect(self.db) as db:
            return db.execute("SELECT count(*) FROM task").fetchone()[0]

    def stop(self) -> None:
        dfk = getattr(self, "dfk", None)
        if dfk is not None:
            import parsl

            try:
                dfk.cleanup()
            finally:
                parsl.clear()
