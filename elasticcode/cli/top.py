"""`flow top`: each node's processors live, from the figures the agents publish once a second."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..errors import ElasticCodeError
from .context import FlowContext, json_flag, pass_flow

NOTHING = "no agent publishes figures (is one running? `flow up` / `flow agent start`)"


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def node_table(record: Any, now: float) -> Table:
    """One node's record (`elasticcode.runtime.metrics.NodeMetrics`) as a table: one row per processor."""
    taken = time.strftime("%H:%M:%S", time.localtime(record.ts))
    title = f"{record.node}: {record.busy} of {record.cpus} cpus busy ({taken})"
    table = Table(title=title if record.processors else f"{title}: no processors run here", title_justify="left")
    for column, justify in (("Processor", "left"), ("Queue", "right"), ("Busy/Pool", "right"), ("Min..Max", "right"),
                            ("Share", "right"), ("Calls/s", "right"), ("Last decision", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for p in record.processors:
        decision = f"{p.decision} ({_age(max(0.0, now - p.decided))})" if p.decision and p.decided else (p.decision or "")
        table.add_row(p.processor, str(p.queue), f"{p.busy}/{p.pool}", f"{p.min}..{p.max}", str(p.share),
                      f"{p.calls_per_s:.1f}", decision)
    return table


def render(records: list[Any], pressured: dict | None = None) -> Group | Text:
    if not records:
        return Text(NOTHING)
    now = time.time()
    tables: list[Any] = [node_table(r, now) for r in records]
    for (owner, plug), state in sorted((pressured or {}).items(), key=lambda item: (item[0][0], str(item[0][1]))):
        # A plug whose forwards wait for its target's queue to drain (runtime/backpressure.py).
        bound = state.get("max_queued") or state.get("max_bytes")
        tables.append(Text(f"plug {plug} ({owner}) back-pressured: {state.get('queue')} holds {state.get('queued')} "
                           f"(bound {bound})", style="bold red"))
    return Group(*tables)


@click.command()
@click.option("--once", is_flag=True, help="Print the figures once and exit (for scripts)")
@click.option("-n", "--node", "nodes", multiple=True, help="Only this node (repeatable)")
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C)")
@json_flag
@pass_flow
def top(ctx: FlowContext, once: bool, nodes: tuple[str, ...], timeout: float | None, as_json: bool) -> list[dict] | None:
    """Show each node's processors live: queue, busy/pool processes, share of the CPUs, calls/s, scaling decisions"""
    import redis
    from rich.live import Live

    from ..runtime import metrics
    from ..runtime.connections import coordination_client, coordination_url
    from ..security import redact_text, redact_url

    url = coordination_url(ctx.settings.broker, ctx.settings.backend)
    clients: list[redis.Redis] = []

    def read() -> list[metrics.NodeMetrics]:
        try:
            if not clients:
                clients.append(coordination_client(ctx.settings.broker, ctx.settings.backend))
            records = metrics.latest(clients[0])
        except (redis.RedisError, ValueError) as exc:  # ValueError: an option in the URL redis-py cannot read
            detail = redact_text(str(exc).strip().splitlines()[0]) if str(exc).strip() else exc.__class__.__name__
            raise ElasticCodeError(f"cannot reach the Redis of events at {redact_url(url)} ({detail}): "
                                   "start it with `flow up` or check `flow --config`") from None
        return [r for r in records if not nodes or r.node in nodes]

    records = read()
    if not records:
        raise ElasticCodeError(NOTHING if not nodes else f"no agent publishes figures for node {', '.join(nodes)} "
                               "(is its agent running? `flow agent start`; `flow top` lists the nodes that publish)")
    if ctx.as_json or as_json:
        data = [r.to_dict() for r in records]
        click.echo(json.dumps(data, indent=2))
        return data
    console = ctx.console
    from .plugstate import pressure_states

    if once:
        console.print(render(records, pressure_states(ctx)))
        return [r.to_dict() for r in records]
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        with Live(render(records, pressure_states(ctx)), console=console, refresh_per_second=4, auto_refresh=False) as live:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(metrics.PUBLISH_EVERY if deadline is None else
                           max(0.0, min(metrics.PUBLISH_EVERY, deadline - time.monotonic())))
                live.update(render(read(), pressure_states(ctx)), refresh=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how one leaves `flow top`
    if not console.is_terminal:
        console.line()
    return None
