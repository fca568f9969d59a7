"""A whole flow run as one frame: the calls a handle started and the calls plugs made from them.

Calls forwarded along plugs share the tracking id (the root) of the call that started the run,
so `history(root=...)` holds them, once they exist. Waiting for them needs to know which must
come: every closed call of a socket with plugs (RESULT plugs for a finished call, ERROR plugs
for a failed one) leads to a child of the plug's target, and an argument join fires once every
bound argument of its target has arrived in the run (its call id is derived from target and root).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import text

from ..config import Settings
from ..db.engine import session_scope
from ..errors import ElasticCodeError
from ..runtime import naming
from .recorded import FINAL, settle

FLOW_SECONDS = 60.0


@dataclass(frozen=True)
class PlugInfo:
    name: str
    source: str
    target: str
    argument: str | None
    type: str
    created: datetime


PLUGS = text("""
SELECT p.name, s.name, t.name, p.argument, p.type, p.created FROM plug p
JOIN socket s ON s.id = p.source_id JOIN socket t ON t.id = p.target_id
WHERE p.enabled AND p.status <> 'error'
""")
RESULTS = text("SELECT CAST(id AS text), result FROM call WHERE tracking = CAST(:root AS uuid) OR id = CAST(:root AS uuid)")


def _frame(settings: Settings, root: str) -> pd.DataFrame:
    """history(root=...) with every row (combinators included) and each call's result."""
    import inspect

    from .history import history

    accepts = inspect.signature(history).parameters
    extra = {name: True for name in ("results", "combinators") if name in accepts}
    frame = history(root=root, settings=settings, **extra)
    if "results" not in extra:
        with session_scope(settings.require_db()) as session:
            results = dict(session.execute(RESULTS, {"root": root}).all())
        frame["result"] = [results.get(i) for i in frame["id"]]
    return frame


def _plugs(settings: Settings) -> list[PlugInfo]:
    with session_scope(settings.require_db()) as session:
        return [PlugInfo(*row) for row in session.execute(PLUGS).all()]


def missing(frame: pd.DataFrame, plugs: list[PlugInfo], root: str) -> list[str]:
    """What the run still lacks: calls not closed, and calls its plugs must make but have not."""
    lacking = [f"{r['name']} ({r['id'][:8]}) is {r['state']}" for _, r in frame.iterrows() if r["state"] not in FINAL]
    children = {(r["parent"], r["name"]) for _, r in frame.iterrows() if isinstance(r["parent"], str)}
    ids = set(frame["id"])
    arrived: dict[str, set[str]] = {}  # join target -> arguments that reached it in this run
    for _, row in frame.iterrows():
        kind = {"finished": "RESULT", "failed": "ERROR"}.get(row["state"])
        for plug in plugs:
            # Only plugs that existed when the call started were in its routes.
            if kind is None or plug.source != row["name"] or plug.type != kind or not _before(plug.created, row["started"]):
                continue
            if plug.argument:
                arrived.setdefault(plug.target, set()).add(plug.argument)
            elif (row["id"], plug.target) not in children:
                lacking.append(f"plug {plug.name} has not yet called {plug.target} with the result of {row['id'][:8]}")
    for target, args in arrived.items():
        wanted = {p.argument for p in plugs if p.target == target and p.argument}
        if args >= wanted and naming.join_call_id(target, root) not in ids:
            lacking.append(f"the argument join of {target} ({', '.join(sorted(wanted))}) has not started")
    return lacking


def _before(created: datetime, started: Any) -> bool:
    return started is not None and not pd.isna(started) and pd.Timestamp(created) <= pd.Timestamp(started)


def flow_frame(handle, settings: Settings, wait: bool = False, timeout: float = FLOW_SECONDS) -> pd.DataFrame:
    """The handle's whole flow run, oldest first, with results; with `wait`, once nothing more is to come."""
    if not wait:
        settle(settings, [handle.id])
        return _frame(settings, handle.id)
    deadline = time.monotonic() + timeout
    try:
        handle.get(timeout=timeout)
    except Exception:  # noqa: BLE001 - a failed run is still a run to show; one that is not done is not
        if not handle.ready():
            raise
    settle(settings, [handle.id], timeout=max(0.0, deadline - time.monotonic()))
    plugs, pause = _plugs(settings), 0.02
    while True:
        frame = _frame(settings, handle.id)
        lacking = missing(frame, plugs, handle.id)
        if not lacking:
            return frame
        if time.monotonic() + pause > deadline:
            raise ElasticCodeError(
                f"flow run {handle.id} is not complete after {timeout:g}s: {lacking[0]}"
                + (f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else "")
                + "; is its processor running (`flow ls processors`)? call .flow() for what is recorded so far")
        time.sleep(pause)
        pause = min(pause * 2, 0.25)
