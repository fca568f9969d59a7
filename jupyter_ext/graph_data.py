"""What the flow graph reads besides the routes: which processors to show, their statuses, and the
call counts it starts from (so a socket shows its true totals, not only what happened since the
graph opened)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import text

from elasticcode.config import Settings
from elasticcode.db.engine import session_scope
from elasticcode.runtime.events import STATES

from .live import StateTally

RECENT = timedelta(hours=1)  # a processor with calls this recent is shown by default
COUNTED = timedelta(hours=24)  # the period whose calls a graph counts from history
SETTLING = timedelta(seconds=30)  # calls changed this recently may still have live events on the way

ACTIVE = text("SELECT DISTINCT processor FROM call WHERE created >= :since AND processor IS NOT NULL")
STATUSES = text("SELECT CAST(id AS text), status FROM processor WHERE CAST(id AS text) = ANY(:ids)")
TOTALS = text("SELECT name, state, count(*) FROM call WHERE created >= :since AND name = ANY(:names) "
              "AND state = ANY(:final) AND lastupdated < :settling GROUP BY name, state")
FIRST = text("SELECT min(created) FROM call WHERE created >= :since AND name = ANY(:names)")
OPEN = text("SELECT CAST(id AS text), name, state FROM call WHERE created >= :since AND name = ANY(:names) "
            "AND (state <> ALL(:final) OR lastupdated >= :settling)")
FINAL = [s for s in STATES if s in ("finished", "failed", "dead")]


def active_processors(settings: Settings, now: datetime | None = None) -> set[str]:
    now = now or datetime.now().astimezone()
    with session_scope(settings.require_db()) as session:
        return set(session.execute(ACTIVE, {"since": now - RECENT}).scalars())


def processor_statuses(settings: Settings, ids: Iterable[str]) -> dict[str, str]:
    with session_scope(settings.require_db()) as session:
        return dict(session.execute(STATUSES, {"ids": list(ids)}).all())


def seed_counts(settings: Settings, tally: StateTally, sockets: Iterable[str], now: datetime | None = None) -> datetime | None:
    """Load the sockets' calls of the counted period into `tally`: closed calls as totals, calls
    still open (or closed a moment ago, whose events may still arrive) one by one, so that their
    live events move them instead of counting them twice. Returns when the counts start."""
    now = now or datetime.now().astimezone()
    names = sorted(set(sockets))
    if not names:
        return None
    params = {"since": now - COUNTED, "names": names, "final": FINAL, "settling": now - SETTLING}
    with session_scope(settings.require_db()) as session:
        totals = session.execute(TOTALS, params).all()
        calls = session.execute(OPEN, params).all()
        first = session.execute(FIRST, params).scalar()
    tally.seed(totals, calls)
    return first
