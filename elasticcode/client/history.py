"""`elasticcode.history(...)`: the call history as a typed pandas DataFrame.

Rows stream out of PostgreSQL with COPY (CSV), which loads 100k calls in well under a second;
the query is bound with the driver's quoting (mogrify), never by string formatting.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pandas as pd

from ..catalog import rights
from ..config import Settings
from ..db.engine import get_engine, session_scope
from ..errors import ElasticCodeError
from ..runtime.events import CALL_COLUMNS

DTYPES = {"text": "string", "int": "Int64", "float": "float64"}
# Every call column but the result (kept in the database, up to 64 KB each, and not loaded here).
SELECTED = [name for name, kind in CALL_COLUMNS.items() if kind != "json"]
COLUMNS = {name: DTYPES[kind] for name, kind in CALL_COLUMNS.items() if kind in DTYPES}
TIMES = [name for name, kind in CALL_COLUMNS.items() if kind == "time"]


def _explain_refusal(url: str) -> None:
    """Raise the rights check's own one-line error (not a user, or lacks LS_CALLS)."""
    with session_scope(url) as session:
        rights.require(session, "LS_CALLS")
    raise ElasticCodeError("you lack the right LS_CALLS: an admin grants it with `flow add privilege -n LS_CALLS`")


def history(socket: str | None = None, root: str | None = None, since: datetime | timedelta | str | None = None,
            state: str | None = None, limit: int | None = None, settings: Settings | None = None) -> pd.DataFrame:
    """Calls, oldest first: filter by socket name, flow-run root id, start time, state; cap with limit.

    `since` takes a datetime, a timedelta (that long ago) or an ISO string. Timestamps are UTC
    datetimes; `duration` is in seconds. Rows follow row-level security: your own calls only, and
    only with the right LS_CALLS (without it, one clear error).
    """
    from .settings import default_settings

    settings = settings or default_settings()
    where, params = [], []
    if socket:
        where.append("name = %s")
        params.append(socket)
    if root:
        where.append("(tracking = %s OR id = %s)")
        params += [root, root]
    if since is not None:
        if isinstance(since, timedelta):
            since = datetime.now().astimezone() - since
        where.append("created >= %s")
        params.append(since)
    if state:
        where.append("state = %s")
        params.append(state)
    query = f"SELECT {', '.join(SELECTED)} FROM call"  # fixed column list; values bound below
    if where:
        query += " WHERE " + " AND ".join(where)
    query += " ORDER BY created, id"
    if limit is not None:
        query += " LIMIT %s"
        params.append(int(limit))
    buffer = io.StringIO()
    url = settings.require_db()
    raw = get_engine(url).raw_connection()
    try:
        with raw.cursor() as cur:
            # Row-level security would quietly return no rows without LS_CALLS: say why instead.
            cur.execute("SELECT elasticcode_has_right('LS_CALLS')")
            if not cur.fetchone()[0]:
                raw.rollback()
                _explain_refusal(url)
            bound = cur.mogrify(query, params).decode()
            cur.copy_expert(f"COPY ({bound}) TO STDOUT WITH (FORMAT csv, HEADER true)", buffer)
        raw.commit()
    finally:
        raw.close()
    buffer.seek(0)
    frame = pd.read_csv(buffer, dtype=COLUMNS, keep_default_na=False, na_values={c: [""] for c in COLUMNS})
    for column in TIMES:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame
