"""The one builder of routes: the model database's sockets and plugs as a `RouteTable`.

Agents build it (seeing every owner) and publish it for workers and clients; the notebook graph
builds it under the user's row-level security (seeing their own). The routing contract itself
lives in `elasticcode.runtime.routes`.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from ..db import model as m
from ..runtime import naming
from ..runtime.routes import PlugRoute, Route, RouteTable


def socket_route(sock: m.Socket, plugs: tuple[PlugRoute, ...] = (), join: tuple[str, ...] = ()) -> Route:
    proc = sock.processor
    return Route(
        socket=sock.name, owner=sock.owner, task=naming.task_name(sock.name),
        queue=naming.broker_queue(sock.queue.name, proc.name), processor=proc.name, function=sock.task.function,
        plugs=plugs, join=join, processor_status=proc.status, processor_message=proc.status_message,
        socket_status=sock.status, socket_message=sock.status_message,
        changed=proc.lastupdated.timestamp() if proc.lastupdated else 0.0,
    )


def build_routes(session: Session) -> RouteTable:
    """Every socket the session can see, with its enabled plugs (both ends visible) and join arguments."""
    sockets = session.execute(
        select(m.Socket).options(joinedload(m.Socket.queue), joinedload(m.Socket.processor), joinedload(m.Socket.task))
    ).scalars().all()
    by_id = {s.id: s for s in sockets}
    plugs: dict[str, list[PlugRoute]] = {}
    joins: dict[str, set[str]] = {}
    # A plug the agent found broken (its bound argument is no parameter of the target) carries no calls.
    live = select(m.Plug).where(m.Plug.enabled.is_(True), m.Plug.status != "error").order_by(m.Plug.name)
    for plug in session.execute(live).scalars():
        source, target = by_id.get(plug.source_id), by_id.get(plug.target_id)
        if source is None or target is None:
            continue
        plugs.setdefault(source.id, []).append(
            PlugRoute(plug.name, plug.type, target.name, target.owner, plug.argument, plug.max_queued, plug.max_bytes))
        if plug.argument:
            joins.setdefault(target.id, set()).add(plug.argument)
    table = RouteTable()
    for sock in sockets:
        table.add(socket_route(sock, tuple(plugs.get(sock.id, ())), tuple(sorted(joins.get(sock.id, ())))))
    return table
