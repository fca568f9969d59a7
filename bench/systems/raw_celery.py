"""Raw Celery on the stack's Redis: one worker of `workers` prefork processes, and one of 1 process for
P3's single-process run, each on its own queue. Two lines: durable settings, and ElasticCode's app settings."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from .. import procs
from . import HOP_PAUSE, summary_ms
from . import System as Base

TIMEOUT = 600


class System(Base):
    def start(self, workers: int) -> dict:
        settings = self.options["settings"]
        os.environ["BENCH_CELERY_SETTINGS"] = settings
        import celery

        from . import celery_app

        self.app, self.echo, self.spin = celery_app.app, celery_app.ECHO, celery_app.SPIN
        self.hop_source, self.hop_id = celery_app.HOP_SOURCE, celery_app.hop_id
        self.queues = {workers: f"bench.{settings}.n", 1: f"bench.{settings}.1"}
        self.workers = []
        for procs_, queue in self.queues.items():
            log = open(self.work_dir / f"celery-{settings}-{procs_}.log", "wb")
            self.workers.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bench.systems.celery_app", "worker", "-P", "prefork", "-c", str(procs_),
                 "-Q", queue, "-n", f"{settings}-{procs_}@bench", "--loglevel", "WARNING", "--without-gossip",
                 "--without-mingle"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        for queue in self.queues.values():  # both workers answer before anything is timed
            self.app.send_task(self.echo, args=[0], queue=queue).get(timeout=120)
        return {"version": celery.__version__, "settings": settings, "pool": f"prefork -c {workers} (and -c 1 for P3)"}

    def roundtrip(self) -> None:
        self.app.send_task(self.echo, args=[1], queue=self.queues[max(self.queues)]).get(timeout=TIMEOUT)

    def _gather(self, results) -> None:
        for result in results:
            result.get(timeout=TIMEOUT)

    def burst(self, n: int) -> None:
        queue = self.queues[max(self.queues)]
        self._gather([self.app.send_task(self.echo, args=[i], queue=queue) for i in range(n)])

    def cpu(self, n_calls: int, procs_: int, work: int) -> None:
        queue = self.queues[procs_]
        self._gather([self.app.send_task(self.spin, args=[work], queue=queue) for _ in range(n_calls)])

    def plug_hop(self, count: int) -> dict:
        """P4's hop, as ElasticCode's plug_hop times it: the next task's start - the source's finish."""
        queue = self.queues[max(self.queues)]
        sources = []
        for _ in range(count):
            source = self.app.send_task(self.hop_source, args=[queue], queue=queue)
            source.get(timeout=TIMEOUT)
            sources.append(source.id)
            time.sleep(HOP_PAUSE)  # as for ElasticCode: the client waits for the next task's result only after all
        return summary_ms([self.app.AsyncResult(self.hop_id(sid)).get(timeout=TIMEOUT) for sid in sources])

    def stop(self) -> None:
        for worker in getattr(self, "workers", []):
            procs.stop_popen(worker)
