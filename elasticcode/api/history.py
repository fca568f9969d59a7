"""`GET /history`: `elasticcode.history()`'s frame, read as the token's role, for JSON, Arrow or Parquet.

The filters, the columns and their dtypes are `client/history.py`'s (SELECTED, its Arrow types,
the combinator rule), so a frame read back from Arrow equals what `elasticcode.history()` returns.
The query runs in the request's transaction (the role is set), which `history()` cannot take.
"""

from __future__ import annotations

import io
from datetime import datetime

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from ..catalog import rights
from ..client.history import copy_frame, history_query

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


def history_frame(session: Session, socket: str | None = None, root: str | None = None, since: datetime | None = None,
                  state: str | None = None, limit: int | None = None, results: bool = False,
                  combinators: bool = False) -> pd.DataFrame:
    if not session.execute(text("SELECT elasticcode_has_right('LS_CALLS')")).scalar():
        rights.require(session, "LS_CALLS")  # the one-line refusal
    query, params = history_query(socket, root, since, state, limit, results, combinators)
    with session.connection().connection.dbapi_connection.cursor() as cur:
        return copy_frame(cur, query, params, "string" if results else None)


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
