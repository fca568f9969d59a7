"""Supervision: keep this node's workers alive; a worker that cannot load its code is an error, not a loop."""

from __future__ import annotations

import logging

from elasticcode.db import model as m
from elasticcode.db.engine import session_scope
from elasticcode.runtime import naming
from elasticcode.runtime.workerspec import EXIT_BAD_CODE

from .context import AgentContext
from .redelivery import restore_inflight
from .rows import record_worker, set_status
from .steps import Step
from .supervisor import WorkerProcess

log = logging.getLogger("elasticcode.agent")


class Supervision(Step):
    def __init__(self, ctx: AgentContext):
        self.ctx = ctx

    def tick(self, now: float) -> None:
        self.supervise()

    def supervise(self) -> None:
        """Restart workers that died (with backoff) and record them; bad code goes to the processor's status."""
        for proc_id, worker in self.ctx.workers.items():
            if worker.alive():
                continue
            self.redeliver(worker)
            code = worker.exit_code()
            if code == EXIT_BAD_CODE:
                with session_scope(self.ctx.db_url) as s:
                    proc = s.get(m.Processor, proc_id)
                    if proc is not None:
                        set_status(proc, "error", worker.last_error())
                self.ctx.workers.forget(proc_id)
                continue
            if worker.restart_if_due():
                log.warning("%s: worker exited with %s; restarted", worker.processor, code)
                with session_scope(self.ctx.db_url) as s:
                    proc = s.get(m.Processor, proc_id)
                    if proc is not None:
                        record_worker(s, self.ctx, proc, worker, worker.spec.commit)

    def redeliver(self, worker: WorkerProcess) -> None:
        """The calls a dead worker held go back to their queues now, not after the visibility timeout."""
        dead = worker.clear_after_death()
        if dead is not None:
            try:
                restore_inflight(self.ctx.broker, naming.worker_name(worker.processor, self.ctx.hostname), dead)
            except Exception as exc:  # noqa: BLE001 - the broker may be away too: Redis's own timeout still applies
                log.warning("%s: could not put back the calls of dead worker %s yet: %s", worker.processor, dead, exc)
                worker.cleared_pid = None  # try again next turn

    def degraded(self) -> None:
        """Keep workers alive even while the database is unreachable."""
        for worker in self.ctx.workers:
            if not worker.alive() and worker.exit_code() != EXIT_BAD_CODE:
                self.redeliver(worker)
                worker.restart_if_due()

    def stop(self) -> None:
        """Warm shutdown of every worker (before registration marks them stopped)."""
        self.ctx.workers.stop_all()
