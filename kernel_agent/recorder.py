"""The provenance recorder: drains the call-event stream into PostgreSQL in batches.

Entries stay in the Redis stream (pending in the consumer group) until the rows that carry
them are committed, and every write is an idempotent upsert, so a database outage only delays
provenance: when PostgreSQL is back, the pending entries are written and acknowledged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import redis
from sqlalchemy import Text, case, cast, func, literal, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from elasticcode.db import model as m
from elasticcode.db.engine import get_engine
from elasticcode.runtime import naming

from .nodeinfo import hostname

log = logging.getLogger("elasticcode.recorder")
EVENT_NAMESPACE = uuid.UUID("0b8f4a52-7f1e-4d6b-bb6e-3f5f5b1d2c11")
STATE_OF_EVENT = {"queued": "queued", "received": "received", "prerun": "running", "postrun": "finished",
                  "failure": "failed", "dead": "dead"}
STATE_RANK = ["queued", "received", "running", "failed", "finished", "dead"]
BATCH = 500


def _ts(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), tz=timezone.utc) if value else None


def _decode(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in fields.items()}


def merge(entries: Iterable[tuple[bytes, dict[bytes, bytes]]]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Fold a batch of stream entries into one row per call plus the event rows."""
    calls: dict[str, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    for entry_id, raw in entries:
        e = _decode(raw)
        call_id, name = e["call"], e["event"]
        at = _ts(e.get("ts"))
        row = calls.setdefault(call_id, {"id": call_id, "state": "queued", "created": at})
        state = STATE_OF_EVENT.get(name)
        if state and STATE_RANK.index(state) >= STATE_RANK.index(row["state"]):
            row["state"] = state
        for key in ("processor", "tracking", "parent", "argument", "worker", "host"):
            if e.get(key):
                row[key] = e[key]
        if e.get("socket"):
            row["name"] = e["socket"]
        if e.get("user"):
            row["owner"] = e["user"]
        if name == "received":
            row["received"] = row.get("received") or at
        elif name == "prerun":
            row["started"] = at
        elif name in ("postrun", "failure", "dead"):
            row["finished"] = at
            if e.get("duration"):
                row["duration"] = float(e["duration"])
            if e.get("error"):
                row["error"] = e["error"]
            if e.get("result"):
                row["result"] = json.loads(e["result"])
        if e.get("deliveries"):
            row["deliveries"] = max(int(e["deliveries"]), row.get("deliveries", 0))
        note = e.get("error") or e.get("socket")
        events.append({"id": str(uuid.uuid5(EVENT_NAMESPACE, f"{call_id}|{name}|{entry_id.decode()}")),
                       "name": name, "call_id": call_id, "note": note, "created": at,
                       **({"owner": e["user"]} if e.get("user") else {})})
    return calls, events


COLUMNS = ("id", "name", "state", "owner", "processor", "tracking", "parent", "argument", "worker", "host",
           "deliveries", "received", "started", "finished", "duration", "error", "result", "created")


LINK_SOCKETS = text(
    "UPDATE call SET socket_id = s.id FROM socket s "
    "WHERE call.id = ANY(CAST(:ids AS uuid[])) AND call.socket_id IS NULL AND s.name = call.name AND s.owner = call.owner"
)


def upsert_calls(conn, calls: dict[str, dict[str, Any]]) -> None:
    rows = []
    for row in calls.values():
        row = dict(row)
        row.setdefault("name", "?")
        rows.append(row)
    for keys in {tuple(sorted(r)) for r in rows}:  # executemany needs uniform keys
        group = [r for r in rows if tuple(sorted(r)) == keys]
        stmt = insert(m.Call).values(group)
        ex, cur = stmt.excluded, m.Call.__table__.c
        rank = lambda col: func.array_position(literal(STATE_RANK), cast(col, Text))  # noqa: E731
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "state": case((rank(ex.state) >= rank(cur.state), ex.state), else_=cur.state),
                "name": case((ex.name != "?", ex.name), else_=cur.name),
                **{c: func.coalesce(cur[c], ex[c]) for c in ("received", "tracking", "parent", "argument") if c in keys},
                **{c: func.coalesce(ex[c], cur[c]) for c in ("started", "finished", "duration", "error", "result",
                                                             "worker", "host", "processor") if c in keys},
                "deliveries": func.greatest(ex.deliveries, cur.deliveries),
                "lastupdated": func.now(),
            },
        )
        conn.execute(stmt)
    # Sockets are linked by name in SQL, so a socket deleted and re-created never leaves a stale id.
    conn.execute(LINK_SOCKETS, {"ids": list(calls)})


class Recorder(threading.Thread):
    def __init__(self, db_url: str, client: redis.Redis, stop: threading.Event, publish: bool = True):
        super().__init__(name="recorder", daemon=True)
        self.db_url, self.redis, self.stop_event, self.publish = db_url, client, stop, publish
        self.consumer = f"{hostname()}-{os.getpid()}"
        self.written = self.rejected = 0

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(naming.EVENTS_STREAM, naming.RECORDER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _store(self, entries: list) -> None:
        calls, events = merge(entries)
        with get_engine(self.db_url).begin() as conn:
            upsert_calls(conn, calls)
            for keys in {tuple(sorted(e)) for e in events}:
                group = [e for e in events if tuple(sorted(e)) == keys]
                conn.execute(insert(m.Event).values(group).on_conflict_do_nothing(index_elements=["id"]))

    def write(self, entries: list) -> None:
        try:
            self._store(entries)
        except (IntegrityError, DataError):
            # A batch the database refuses (not an outage): store entry by entry and set aside
            # the ones it still refuses, so one bad event never blocks everyone's provenance.
            for entry in entries:
                try:
                    self._store([entry])
                except (IntegrityError, DataError) as exc:
                    self.rejected += 1
                    log.error("recorder: event %s refused (%s); kept in %s", entry[0], str(exc).splitlines()[0],
                              naming.EVENTS_REJECTED_STREAM)
                    self.redis.xadd(naming.EVENTS_REJECTED_STREAM, {**entry[1], b"error": str(exc).splitlines()[0]})
        ids = [entry_id for entry_id, _ in entries]
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(naming.EVENTS_STREAM, naming.RECORDER_GROUP, *ids)
        pipe.xdel(naming.EVENTS_STREAM, *ids)
        if self.publish:
            for _, raw in entries:
                e = _decode(raw)
                message = json.dumps({"channel": "task", "state": e["event"], "call": e["call"], "socket": e.get("socket"),
                                      "date": datetime.fromtimestamp(float(e["ts"]), tz=timezone.utc).isoformat(),
                                      "room": e.get("processor"), **({"error": e["error"]} if e.get("error") else {})})
                pipe.publish(naming.channel(e.get("processor") or "unknown", "task"), message)
        pipe.execute()
        self.written += len(entries)

    def run(self) -> None:
        backoff, own_pending, last_claim = 0.5, True, 0.0
        while not self.stop_event.is_set():
            try:
                self.ensure_group()
                if own_pending:
                    reply = self.redis.xreadgroup(naming.RECORDER_GROUP, self.consumer, {naming.EVENTS_STREAM: "0"}, count=BATCH)
                else:
                    reply = self.redis.xreadgroup(naming.RECORDER_GROUP, self.consumer, {naming.EVENTS_STREAM: ">"},
                                                  count=BATCH, block=200)
                entries = [e for _, batch in (reply or []) for e in batch if e[1]]
                if own_pending and not entries:
                    own_pending = False
                if time.monotonic() - last_claim > 30:
                    # Take over entries a dead recorder left pending for more than a minute.
                    last_claim = time.monotonic()
                    claimed = self.redis.xautoclaim(naming.EVENTS_STREAM, naming.RECORDER_GROUP, self.consumer,
                                                    min_idle_time=60000, start_id="0", count=BATCH)
                    entries += [e for e in claimed[1] if e[1]]
                if entries:
                    self.write(entries)
                backoff = 0.5
            except (SQLAlchemyError, redis.RedisError, OSError) as exc:
                log.warning("recorder: %s; retrying in %.1fs (events stay queued)", str(exc).splitlines()[0], backoff)
                own_pending = True
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 10)
