"""`GET /history`: `elasticcode.history()`'s frame, read as the token's role, for JSON, Arrow or Parquet.

The filters, the columns and their dtypes are `client/history.py`'s (COLUMNS, SELECTED, TIMES,
the combinator rule), so a frame read back from Arrow equals what `elasticcode.history()` returns.
The query runs in the request's transaction (the role is set), which `history()` cannot take.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from ..catalog import rights
from ..client.history import COLUMNS, COMBINATOR_PROCESSOR, COMBINATORS, SELECTED, TIMES

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


def history_frame(session: Session, socket: str | None = None, root: str | None = None, since: datetime | None = None,
                  state: str | None = None, limit: int | None = None, results: bool = False,
                  combinators: bool = False) -> pd.DataFrame:
    if not session.execute(text("SELECT elasticcode_has_right('LS_CALLS')")).scalar():
        rights.require(session, "LS_CALLS")  # the one-line refusal
    where: list[str] = []
    params: list[Any] = []
    if socket:
        where.append("name = %s")
        params.append(socket)
    if root:
        where.append("(tracking = %s OR id = %s)")
        params += [root, root]
    if since is not None:
        where.append("created >= %s")
        params.append(since)
    if state:
        where.append("state = %s")
        params.append(state)
    if not combinators:
        where.append("(processor IS DISTINCT FROM %s OR name <> ALL(%s))")
        params += [COMBINATOR_PROCESSOR, list(COMBINATORS)]
    columns = SELECTED + (["result"] if results else [])
    query = f"SELECT {', '.join(columns)} FROM call"  # fixed column list; values bound below
    if where:
        query += " WHERE " + " AND ".join(where)
    query += " ORDER BY created, id"
    if limit is not None:
        query += " LIMIT %s"
        params.append(int(limit))
    buffer = io.StringIO()
    raw = session.connection().connection.dbapi_connection
    with raw.cursor() as cur:
        bound = cur.mogrify(query, params).decode()
        cur.copy_expert(f"COPY ({bound}) TO STDOUT WITH (FORMAT csv, HEADER true)", buffer)
    buffer.seek(0)
    dtypes = {**COLUMNS, **({"result": "string"} if results else {})}
    frame = pd.read_csv(buffer, dtype=dtypes, keep_default_na=False, na_values={c: [""] for c in dtypes})
    for column in TIMES:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame


def to_arrow(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def to_parquet(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.to_parquet(out, index=False)
    return out.getvalue()
