"""`flow node stats`: the nodes agents registered, their status, resources, last heartbeat and the
processes each processor runs there now (from the figures agents publish, `runtime/metrics.py`)."""

from __future__ import annotations

import click

from .. import catalog
from ..errors import ElasticCodeError
from .context import FlowContext, emit, pass_flow


@click.group()
def node() -> None:
    """Node management operations"""


def _gib(value: int | None) -> float | None:
    return None if value is None else round(value / 2**30, 1)


def _processes(ctx: FlowContext) -> dict[str, str]:
    """Node -> `processor busy/pool (max share)` for each processor its agent published last; empty
    when the coordination Redis cannot be reached (the rest of the table still shows)."""
    from ..runtime import metrics
    from ..runtime.connections import coordination_client

    if not ctx.settings.broker:
        return {}
    try:
        records = metrics.latest(coordination_client(ctx.settings.broker, ctx.settings.backend))
    except Exception:  # noqa: BLE001 - figures are a courtesy here; the database rows are the answer
        return {}
    return {r.node: ", ".join(f"{p.processor} {p.busy}/{p.pool} (max {p.share})" for p in r.processors)
            for r in records}


@node.command("stats")
@click.option("-n", "--name", default=None, help="Only this node")
@pass_flow
def node_stats(ctx: FlowContext, name: str | None) -> list[dict]:
    """Show nodes' status, CPUs, memory, disk, load, last heartbeat and processes per processor"""
    from ..db import model as m

    running = _processes(ctx)

    with ctx.session() as session:
        catalog.ops.rights.require(session, "LS_NODES")
        nodes = session.query(m.Node).order_by(m.Node.name)
        if name:
            nodes = nodes.filter(m.Node.name == name)
        rows = [{"name": n.name, "status": n.status, "cpus": n.cpus, "load": n.cpuload, "mem_gib": _gib(n.memsize),
                 "free_mem_gib": _gib(n.freemem), "disk_gib": _gib(n.disksize), "free_disk_gib": _gib(n.diskfree),
                 "agent": n.agent.status if n.agent else None, "heartbeat": n.agent.heartbeat if n.agent else None,
                 "processes": running.get(n.name, "") if n.status == "running" else ""}
                for n in nodes]
    if name and not rows:
        raise ElasticCodeError(f"node {name!r} does not exist: agents register their node when they start")
    return emit(ctx, rows, "Nodes")
