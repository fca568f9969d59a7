"""The network as workers need it: per socket, its task, broker queue and outgoing plugs.

Built from the model database by agents and published to Redis (elasticcode.runtime.coord),
so workers never query PostgreSQL on the hot path.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from elasticcode.db import model as m
from elasticcode.runtime import naming


def socket_entry(sock: m.Socket) -> dict[str, Any]:
    return {
        "task": naming.task_name(sock.name),
        "queue": naming.broker_queue(sock.queue.name, sock.processor.name),
        "processor": sock.processor.name,
        "function": sock.task.function,
        "owner": sock.owner,
        "plugs": [],
        "join": [],
    }


def build(session: Session) -> dict[str, Any]:
    sockets = session.execute(
        select(m.Socket).options(joinedload(m.Socket.queue), joinedload(m.Socket.processor), joinedload(m.Socket.task))
    ).scalars().all()
    out = {s.name: socket_entry(s) for s in sockets}
    by_id = {s.id: s.name for s in sockets}
    for plug in session.execute(select(m.Plug).where(m.Plug.enabled.is_(True)).order_by(m.Plug.name)).scalars():
        source, target = by_id.get(plug.source_id), by_id.get(plug.target_id)
        if source is None or target is None:
            continue
        out[source]["plugs"].append({"name": plug.name, "type": plug.type, "target": target, "argument": plug.argument})
        if plug.argument and plug.argument not in out[target]["join"]:
            out[target]["join"].append(plug.argument)
    for entry in out.values():
        entry["join"].sort()
    return out
