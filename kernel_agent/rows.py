"""What the agent writes about the processors and workers it runs (shared by reconcile and supervision)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from elasticcode.db import model as m
from elasticcode.runtime import naming
from elasticcode.security import redact_url

from .context import AgentContext
from .supervisor import WorkerProcess


def set_status(proc: m.Processor, status: str, message: str | None) -> None:
    """Assigned only when it changed, so an unchanged reconcile leaves the row alone."""
    if proc.status != status or proc.status_message != message:
        proc.status, proc.status_message = status, message


def record_worker(session: Session, ctx: AgentContext, proc: m.Processor, worker: WorkerProcess, commit: str) -> None:
    """The worker row of `proc` on this node, as `worker` now runs it."""
    name = naming.worker_name(proc.name, ctx.hostname)
    row = session.execute(select(m.Worker).where(m.Worker.name == name, m.Worker.processor_id == proc.id)).scalar()
    if row is None:
        row = m.Worker(name=name, processor_id=proc.id, owner=proc.owner)
        session.add(row)
    row.agent_id, row.hostname, row.process, row.concurrency = ctx.agent_id, ctx.hostname, worker.pid, proc.concurrency
    row.commit, row.status, row.workerdir = commit, "running", str(worker.run_dir)
    row.broker, row.backend = redact_url(ctx.broker) or None, redact_url(ctx.backend) or None
