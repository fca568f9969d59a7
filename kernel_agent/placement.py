"""Placement: which processors run on this node.

A processor pinned with `-h NODE` runs on that node only. One without a host runs a worker on
every node whose agent is alive: each worker consumes the same queues, so the broker hands each
call to whichever node's worker asks first, and a worker only asks while its node has a core for
it (`scaling.py` lets a pool grow only into the node's free cores, and starts it at its minimum).
The processor's processes thus follow its backlog across nodes, and when a node dies the others
simply go on consuming. Every processor placed here is deployed (its code checked, its worker
started), whatever the others take: the node's CPUs are not reserved but shared among busy pool
processes at run time."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from elasticcode.db import model as m
from elasticcode.runtime import naming

STOPPED = ("stopped", "paused")  # requested statuses that mean: run no worker


def is_mine(proc: m.Processor, hostname: str) -> bool:
    """Placed on this node: pinned to it, or to no node at all (`localhost`, as rows written before
    the CLI resolved it, means the machine's own node)."""
    return not proc.hostname or naming.pinned_node(proc.hostname) == hostname


def load_processors(session: Session) -> list[m.Processor]:
    """Every processor with its sockets, oldest first."""
    return list(session.execute(
        select(m.Processor).options(selectinload(m.Processor.sockets).selectinload(m.Socket.queue),
                                    selectinload(m.Processor.sockets).selectinload(m.Socket.task))
        .order_by(m.Processor.created, m.Processor.name)
    ).scalars().all())


def place(processors: Iterable[m.Processor], hostname: str) -> list[m.Processor]:
    """The processors that should run on this node: placed here, enabled and not stopped."""
    return [proc for proc in processors
            if is_mine(proc, hostname) and proc.requested_status not in STOPPED and proc.enabled]
