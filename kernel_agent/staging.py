"""Bulk writes for the recorder: rows go into a temporary staging table with COPY, then into their
table with one INSERT ... SELECT, so an upsert of hundreds of rows is two statements.

PostgreSQL's COPY is its fastest way in. SQLAlchemy cannot batch an upsert (`ON CONFLICT` is not a
"qualifying" statement for its insertmanyvalues), so executemany sent one statement per row, and
building one multi-row VALUES statement per batch spent more CPU compiling it than PostgreSQL took
to run it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError


def csv_field(value: Any) -> str:
    """One CSV field as COPY reads it: unquoted empty is NULL, anything quoted is a value. JSON
    columns are given their JSON text."""
    if value is None:
        return ""
    kind = type(value)
    if kind is str:  # most fields: tested first, the recorder formats several per event
        return '"' + value.replace('"', '""') + '"'
    if kind is bool:
        value = "true" if value else "false"
    elif kind is int or kind is float:
        return repr(value)
    elif kind is datetime:
        value = value.isoformat()
    return '"' + str(value).replace('"', '""') + '"'


def copy_to_stage(conn: Connection, stage: str, like: str, columns: Sequence[str],
                  rows: Iterable[dict[str, Any]]) -> None:
    """Empty the session's temporary table `stage` (made on first use with the columns and types of
    the table `like`, none of its constraints) and COPY `rows` into its `columns`. Driver errors
    come out as SQLAlchemy's, as from `conn.execute`.

    Two round trips: the make-and-empty statements go as one. The table is emptied with DELETE,
    not TRUNCATE: it holds at most one batch, and TRUNCATE gave a temporary table a new file each
    time (with the extra round trip, a quarter to a third of PostgreSQL's CPU per transaction for a
    batch of 15 calls, as P2's bursts write them)."""
    text = "".join(",".join(csv_field(row.get(c)) for c in columns) + "\n" for row in rows)
    raw = conn.connection.driver_connection
    try:
        with raw.cursor() as cur:
            cur.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS SELECT * FROM {like} "
                                "WITH NO DATA; DELETE FROM {stage}")
                        .format(stage=sql.Identifier(stage), like=sql.Identifier(like)))
            cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
                sql.Identifier(stage), sql.SQL(", ").join(map(sql.Identifier, columns))), io.StringIO(text))
    except psycopg2.Error as exc:
        raise DBAPIError.instance(f"COPY {stage}", None, exc, psycopg2.Error) from None


__all__ = ["copy_to_stage", "csv_field"]
