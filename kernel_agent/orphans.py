"""Orphans: before this agent starts any worker, stop the workers its previous life left running.

An agent killed with -9 cannot stop its workers (they run in sessions of their own); they keep
consuming their queues, beside the new agent's workers and out of reach of `flow proc stop`.
Their pidfiles say where they are; each is stopped like any worker (SIGTERM, then SIGKILL of
its group after the stop timeout), then reconcile starts fresh ones.
"""

from __future__ import annotations

import logging

from elasticcode.embedded.workers import stop_orphan_workers

from .context import AgentContext
from .sandbox import agent_sandbox
from .steps import Step

log = logging.getLogger("elasticcode.agent")


class Orphans(Step):
    def __init__(self, ctx: AgentContext):
        self.ctx = ctx

    def start(self) -> None:
        agent_sandbox().announce()
        stopped = stop_orphan_workers(self.ctx.home, self.ctx.stop_timeout)
        if stopped:
            log.warning("stopped %d worker(s) left running by a previous agent", stopped)
