"""Reading call records: pages of calls, one call with its events, and call trees."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from ..db import model as m
from ..errors import ElasticCodeError, NotFound
from ..runtime.events import CALL_SUMMARY
from . import rights


def page_of_calls(
    session: Session, page: int = 1, rows: int = 10, unfinished: bool = False, ascend: bool = False,
    tracking: str | None = None, task: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One page of calls, newest first (or oldest with `ascend`), and the total count."""
    rights.require(session, "LS_CALLS")
    if page < 1 or rows < 1:
        raise ElasticCodeError("page and rows must be at least 1")
    query = select(m.Call)
    if unfinished:
        query = query.where(m.Call.finished.is_(None))
    if tracking:
        query = query.where(m.Call.tracking == _call_id(tracking, "tracking id"))
    if task:
        query = query.where(m.Call.name == task)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    order = m.Call.created.asc() if ascend else m.Call.created.desc()
    calls = session.execute(query.order_by(order, m.Call.id).offset((page - 1) * rows).limit(rows)).scalars()
    return [{c: getattr(call, c) for c in CALL_SUMMARY} for call in calls], total


def _call_id(value: str, what: str = "call id") -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise ElasticCodeError(f"{what} {value!r} is not a call id: copy one from `flow ls calls`") from None


def get_call(session: Session, call_id: str) -> m.Call:
    rights.require(session, "LS_CALLS")
    call = session.execute(
        select(m.Call).options(selectinload(m.Call.events)).where(m.Call.id == _call_id(call_id))
    ).scalar()
    if call is None:
        raise NotFound(f"call {call_id!r} does not exist: list calls with `flow ls calls`")
    return call


class CallTree(dict):
    """A call tree ({'call': {...}, 'children': [...]}); the Jupyter extension displays it as a graph."""

    def __repr__(self) -> str:
        lines: list[str] = []

        def walk(node: dict, depth: int) -> None:
            call = node["call"]
            lines.append(f"{'    ' * depth}{call['name']} {call['id']} {call['state']}")
            for child in node["children"]:
                walk(child, depth + 1)

        walk(self, 0)
        return "\n".join(lines)


def call_tree(session: Session, call_id: str, whole_flow: bool = False) -> CallTree:
    """The call and its descendants as nested dicts ({'call': {...}, 'children': [...]}).

    With `whole_flow`, start from the root of the call's flow run instead (the complete graph).
    """
    root = get_call(session, call_id)
    if whole_flow and root.tracking and root.tracking != root.id:
        try:
            root = get_call(session, root.tracking)
        except NotFound:
            pass
    tracking = root.tracking or root.id
    members = session.execute(
        select(m.Call).where((m.Call.tracking == tracking) | (m.Call.id == root.id)).order_by(m.Call.created)
    ).scalars().all()
    children: dict[str | None, list[m.Call]] = {}
    for call in members:
        children.setdefault(call.parent, []).append(call)

    def build(call: m.Call, depth: int = 0) -> dict[str, Any]:
        kids = [] if depth > 1000 else [build(c, depth + 1) for c in children.get(call.id, ()) if c.id != call.id]
        return {"call": {c: getattr(call, c) for c in CALL_SUMMARY}, "children": kids}

    return CallTree(build(root))
