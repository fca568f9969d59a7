"""Failover: every agent watches the others' heartbeats; a node whose agent fell silent is marked
down and the calls its workers held go back to their queues.

Agents beat every HEARTBEAT seconds (`registration.py`). An agent silent for MISSED heartbeats is
taken by exactly one of the live agents (`FOR UPDATE SKIP LOCKED`): it marks that agent and its
node `down` and its workers `lost`, then, with a Redis broker, restores every message the dead
node's worker processes had taken and not acknowledged (their in-flight logs,
`elasticcode/runtime/inflight.py`), so that they run again on the live nodes now, not after
Redis's one-hour visibility timeout. kombu's `restore_by_tag` moves a message out of the unacked
hash atomically, so two agents (or the node itself, back from a cut link) can never put one
message back twice. The events the dead node's recorder had read and not yet written are claimed
by this agent's recorder at once (not after the stream's one-minute idle rule). RabbitMQ needs
none of this: it requeues a dead consumer's unacknowledged messages when the connection closes
(at once for a killed process, after the missed heartbeats for a cut link). A node that comes back beats again and is `running` once more
(`registration.beat`); its workers never ran the restored calls' acks, so nothing runs twice
except the calls that were running at the cut, which show 2 deliveries.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import func, select, update

from elasticcode.db import model as m
from elasticcode.db.engine import session_scope

from .context import AgentContext
from .recorder import Recorder
from .redelivery import restore_node
from .steps import Step

log = logging.getLogger("elasticcode.agent")
HEARTBEAT = 3.0  # seconds between two heartbeats of an agent (the default)
MISSED = 3  # heartbeats missed before a node is down: 9 s with the default


def take_silent_agents(ctx: AgentContext) -> list[str]:
    """Mark the agents silent for MISSED heartbeats (and their nodes and workers) down; returns the
    names of the nodes this agent took over. Rows another agent is marking are skipped. Heartbeats
    are written and compared in the database's clock, so agents' clocks need not agree."""
    silent = func.now() - timedelta(seconds=MISSED * ctx.heartbeat)
    with session_scope(ctx.db_url) as s:
        agents = s.execute(
            select(m.Agent).where(m.Agent.status == "running", m.Agent.heartbeat < silent, m.Agent.id != ctx.agent_id)
            .with_for_update(skip_locked=True)
        ).scalars().all()
        for agent in agents:
            agent.status = "down"
            s.execute(update(m.Worker).where(m.Worker.agent_id == agent.id, m.Worker.status == "running")
                      .values(status="lost"))
            if agent.node_id is not None:
                s.execute(update(m.Node).where(m.Node.id == agent.node_id).values(status="down"))
        return [agent.name for agent in agents]


class Failover(Step):
    def __init__(self, ctx: AgentContext, recorder: Recorder | None = None):
        self.ctx, self.recorder = ctx, recorder
        self.last_check = 0.0
        self.pending: set[str] = set()  # nodes taken over whose calls could not be restored yet

    def tick(self, now: float) -> None:
        if now - self.last_check < self.ctx.heartbeat:
            return
        self.last_check = now
        for node in take_silent_agents(self.ctx):
            log.warning("node %s: no heartbeat for %.0f s; marked down", node, MISSED * self.ctx.heartbeat)
            self.pending.add(node)
            if self.recorder is not None:
                self.recorder.take_over(node)  # the events its recorder had read, recorded now
        for node in sorted(self.pending):
            try:
                restored = restore_node(self.ctx.broker, node)
            except Exception as exc:  # noqa: BLE001 - the broker may be away: try again next check
                log.warning("node %s: could not put back its calls yet: %s", node, exc)
                continue
            self.pending.discard(node)
            if restored:
                log.warning("node %s: put back %d call(s) it held: %s", node, len(restored), ", ".join(restored))
