"""Registration: this node and its agent in the model database, kept fresh by a heartbeat.

`Registration` registers at start and marks the agent and its workers stopped at shutdown;
`Heartbeat` refreshes the node's figures, the agent's heartbeat and the worker rows' statuses, in
a thread of its own: a long turn of the agent's loop (building a virtual environment) must not
look like a dead node to the other agents (`failover.py`).
"""

from __future__ import annotations

import logging
import os
import threading

from sqlalchemy import func, select

from elasticcode.db import model as m
from elasticcode.db.engine import session_scope
from elasticcode.errors import ElasticCodeError

from . import nodeinfo
from .context import IDLE_TRANSACTION_TIMEOUT, AgentContext
from .steps import Step

log = logging.getLogger("elasticcode.agent")


def register(ctx: AgentContext) -> None:
    """Create or refresh the node and agent rows named for this host; sets ctx.agent_id and ctx.node_id."""
    stats = nodeinfo.stats(str(ctx.home))
    stats["cpus"] = ctx.cpus
    with session_scope(ctx.db_url) as s:
        node = s.execute(select(m.Node).where(m.Node.name == ctx.hostname)).scalar()
        if node is None:
            node = m.Node(name=ctx.hostname, hostname=ctx.hostname)
            s.add(node)
        for key, value in stats.items():
            setattr(node, key, value)
        node.status = "running"
        s.flush()
        agent = s.execute(select(m.Agent).where(m.Agent.name == ctx.hostname)).scalar()
        if agent is None:
            agent = m.Agent(name=ctx.hostname, hostname=ctx.hostname, node_id=node.id)
            s.add(agent)
        agent.pid, agent.cpus, agent.status = os.getpid(), ctx.cpus, "running"
        agent.heartbeat = func.now()  # the database's clock: agents' clocks may differ
        s.flush()
        ctx.agent_id, ctx.node_id = agent.id, node.id


def beat(ctx: AgentContext) -> None:
    stats = nodeinfo.stats(str(ctx.home))
    with session_scope(ctx.db_url, IDLE_TRANSACTION_TIMEOUT) as s:
        node = s.get(m.Node, ctx.node_id)
        agent = s.get(m.Agent, ctx.agent_id)
        if node is None or agent is None:  # deleted from under us: register again
            register(ctx)
            return
        for key in ("freemem", "diskfree", "cpuload"):
            setattr(node, key, stats[key])
        if agent.status != "running" or node.status != "running":  # back after a cut: marked down meanwhile
            log.warning("node %s: rejoined (it was marked %s)", ctx.hostname, agent.status)
            agent.status = node.status = "running"
        agent.heartbeat = func.now()  # the database's clock: agents' clocks may differ
        for worker in s.execute(select(m.Worker).where(m.Worker.agent_id == ctx.agent_id)).scalars():
            running = ctx.workers.get(worker.processor_id)
            worker.status = "running" if running and running.alive() else "stopped"


def mark_stopped(ctx: AgentContext) -> None:
    """At shutdown, after the workers stopped; a database outage only costs the record."""
    try:
        with session_scope(ctx.db_url) as s:
            agent = s.get(m.Agent, ctx.agent_id)
            if agent is not None:
                agent.status = "stopped"
            for worker in s.execute(select(m.Worker).where(m.Worker.agent_id == ctx.agent_id)).scalars():
                worker.status = "stopped"
    except ElasticCodeError as exc:
        log.warning("could not record shutdown: %s", exc)


class Registration(Step):
    def __init__(self, ctx: AgentContext):
        self.ctx = ctx

    def start(self) -> None:
        register(self.ctx)

    def stop(self) -> None:
        mark_stopped(self.ctx)


class Heartbeat(Step):
    def __init__(self, ctx: AgentContext):
        self.ctx = ctx
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ec-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self.ctx.stop_event.wait(self.ctx.heartbeat):
            try:
                beat(self.ctx)
                failing = False
            except Exception as exc:  # noqa: BLE001 - the database may be away: beat again next time
                if not failing:
                    log.warning("heartbeat: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                failing = True

    def stop(self) -> None:
        # Stopped before Registration marks the agent stopped, so no beat marks it running again.
        if self._thread is not None:
            self._thread.join(10)
