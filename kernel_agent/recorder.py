"""The provenance recorder: drains the call-event stream into PostgreSQL in batches.

Entries stay in the Redis stream (pending in the consumer group) until the rows that carry
them are committed, and every write is an idempotent upsert, so a database outage only delays
provenance: when PostgreSQL is back, the pending entries are written and acknowledged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from typing import Any

import redis
from sqlalchemy import Text, and_, case, cast, column, func, literal, or_, select, table, text
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.dialects.postgresql.psycopg2 import dialect as psycopg2_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from elasticcode.db import model as m
from elasticcode.db.engine import get_engine
from elasticcode.runtime import naming, signing
from elasticcode.runtime.events import RANK, STATES, CallEvent, fold_all

from . import streamread
from .context import IDLE_TRANSACTION_TIMEOUT
from .eventkeys import EventKeys
from .staging import copy_to_stage
from .steps import Step
from .streamread import Entry

log = logging.getLogger("elasticcode.recorder")
EVENT_NAMESPACE = uuid.UUID("0b8f4a52-7f1e-4d6b-bb6e-3f5f5b1d2c11")
BATCH = 2000
LINGER = 0.05  # seconds a partial batch waits for more events
SUSTAINED = 20  # entries in a LINGER (400 events/s) that keep a batch gathering, up to
LINGER_MAX = 0.25  # seconds after its first read
# Recorder threads per agent: while one waits for PostgreSQL, another reads and verifies (the
# Python work holds the GIL, PostgreSQL's wait does not). P7, interleaved in one stack: 1,969 ->
# 2,635 calls/s (medians of 4, faster in every pair); P2's bursts unchanged; a third thread added nothing.
THREADS = 2


def event_row(entry_id: str, event: CallEvent) -> dict[str, Any]:
    """The `event` table's row for one stream entry; its id is stable, so writing it twice is harmless."""
    return {"id": stable_uuid(f"{event.call}|{event.event}|{entry_id}"),
            "name": event.event, "call_id": event.call, "note": event.error or event.socket, "created": event.at,
            **({"owner": event.user} if event.user else {})}


_NAMESPACE_BYTES = EVENT_NAMESPACE.bytes


def stable_uuid(name: str) -> str:
    """`str(uuid.uuid5(EVENT_NAMESPACE, name))` (RFC 4122 name-based, SHA-1) without building a UUID
    object, which costs more than the hash: the recorder makes one per event."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


LINK_SOCKETS = text(
    "UPDATE call SET socket_id = s.id FROM socket s "
    "WHERE call.id = ANY(CAST(:ids AS uuid[])) AND call.socket_id IS NULL AND s.name = call.name AND s.owner = call.owner"
)


CALL_STAGE, EVENT_STAGE = "ec_call_stage", "ec_event_stage"


def upsert_calls(conn: Connection, calls: dict[str, dict[str, Any]]) -> None:
    """Merge folded call rows into the `call` table; a state only moves forward (ranked by STATES).

    Where and when a call ran (worker, host, started...) come from the latest delivery: a batch of
    an earlier delivery (held by a recorder on a node that died, written a minute later by another)
    only fills what is missing, and the ending event carries its run's start, so a start written
    meanwhile by the earlier delivery's prerun does not stay. Rows go in id order, so recorders
    writing overlapping batches take row locks in one order and never deadlock."""
    rows = [{"name": "?", **row} for row in calls.values()]
    for keys in sorted({tuple(sorted(r)) for r in rows}):  # one statement per set of columns
        copy_to_stage(conn, CALL_STAGE, "call", keys, [r for r in rows if tuple(sorted(r)) == keys])
        conn.exec_driver_sql(*merge_calls(keys))
    # Sockets are linked by name in SQL, so a socket deleted and re-created never leaves a stale id.
    conn.execute(LINK_SOCKETS, {"ids": list(calls)})


def driver_sql(stmt: Insert) -> tuple[str, dict[str, Any]]:
    """A statement compiled once for psycopg2, to run with `exec_driver_sql`: SQLAlchemy's own
    statement cache missed on these upserts and compiled them again for every batch."""
    compiled = stmt.compile(dialect=psycopg2_dialect(), compile_kwargs={"render_postcompile": True})
    return str(compiled), dict(compiled.params)


@functools.lru_cache(maxsize=64)
def merge_calls(keys: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """INSERT ... SELECT of the staged call rows that carry `keys` (see `staging.py`), compiled once."""
    stage = table(CALL_STAGE, *(column(k) for k in keys))
    stmt = insert(m.Call).from_select(list(keys), select(*stage.c).order_by(stage.c.id))
    ex, cur = stmt.excluded, m.Call.__table__.c
    rank = lambda col: func.array_position(literal(list(STATES)), cast(col, Text))  # noqa: E731
    # A dead-lettered call retried (`flow dead retry`) starts counting deliveries again: its run
    # that closes is the latest, and a success clears the dead letter's error.
    retried = and_(cur.state == "dead", ex.state.in_(("failed", "finished")))
    latest = or_(func.coalesce(ex.deliveries, 0) >= func.coalesce(cur.deliveries, 0), retried)  # not an older delivery's
    error = case((and_(retried, ex.state == "finished"), None),
                 (latest, func.coalesce(ex.error, cur.error)), else_=func.coalesce(cur.error, ex.error))
    return driver_sql(stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={
            "state": case((rank(ex.state) >= rank(cur.state), ex.state), else_=cur.state),
            "name": case((ex.name != "?", ex.name), else_=cur.name),
            # The first receipt, and the first event's time (the queued event, sent from the client's
            # background thread, can be written in a later batch than the worker's received).
            **{c: func.least(cur[c], ex[c]) for c in ("received", "created") if c in keys},
            **{c: func.coalesce(cur[c], ex[c]) for c in ("tracking", "parent", "argument", "inputs", "replay_of")
               if c in keys},
            **{c: case((latest, func.coalesce(ex[c], cur[c])), else_=func.coalesce(cur[c], ex[c]))
               for c in ("started", "finished", "duration", "result", "worker", "host", "processor", "commit",
                         "cpu_seconds", "peak_memory")
               if c in keys},
            "error": error,  # also when the closing row has none: a retry's success clears it
            "deliveries": case((retried, ex.deliveries), else_=func.greatest(ex.deliveries, cur.deliveries)),
            "lastupdated": func.now(),
        },
        # A verified event names its user; it never changes a call of another user's.
        where=(cur.owner == ex.owner),
    ))


@functools.lru_cache(maxsize=8)
def merge_events(keys: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """The staged events that belong to calls of their own user (others are dropped)."""
    stage = table(EVENT_STAGE, *(column(k) for k in keys))
    calls = m.Call.__table__
    own = select(*stage.c).select_from(
        stage.join(calls, (calls.c.id == cast(stage.c.call_id, calls.c.id.type)) & (calls.c.owner == stage.c.owner)))
    return driver_sql(insert(m.Event).from_select(list(keys), own).on_conflict_do_nothing(index_elements=["id"]))


def insert_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    for keys in sorted({tuple(sorted(r)) for r in rows}):
        copy_to_stage(conn, EVENT_STAGE, "event", keys, [r for r in rows if tuple(sorted(r)) == keys])
        conn.exec_driver_sql(*merge_events(keys))


class Recorder(threading.Thread):
    """Drains the stream until `stop` is set; any number of recorders (threads of any agents) share the work."""

    def __init__(self, db_url: str, client: redis.Redis, stop: threading.Event, publish: bool = True,
                 node: str | None = None, index: int = 0, read_lock: threading.Lock | None = None,
                 backlog: threading.Event | None = None):
        super().__init__(name=f"recorder-{index}", daemon=True)
        self.db_url, self.redis, self.stop_event, self.publish = db_url, client, stop, publish
        # Shared by the recorders of one agent: one reads at a time; the first reads always, the
        # others only while the last read found a full batch (a backlog: P7, or catching up after
        # an outage). Two threads reading a trickle would split it into smaller batches, so more
        # transactions, for nothing: one thread keeps up with it.
        self.read_lock = read_lock or threading.Lock()
        self.backlog = backlog or threading.Event()
        self.helper = index > 0
        self.stream = streamread.text_client(client)  # the stream's entries, read as text
        self.consumer = consumer_name(node or naming.node_name(), f"{os.getpid()}.{index}")
        self.written = self.rejected = self.refused = 0
        self.keys = EventKeys(db_url)
        self._take_over: set[str] = set()  # nodes marked down whose recorders' pending entries are ours now

    def take_over(self, node: str) -> None:
        """Claim at once what the recorders of `node` (marked down) had read and not written,
        rather than after the minute of the idle rule."""
        self._take_over.add(node)

    def _claim_node(self, node: str) -> list[Entry]:
        entries: list[Entry] = []
        prefix = consumer_name(node, "")
        for consumer in self.stream.xinfo_consumers(naming.EVENTS_STREAM, naming.RECORDER_GROUP):
            name = consumer["name"]
            if not name.startswith(prefix) or name == self.consumer:
                continue
            pending = self.stream.xpending_range(naming.EVENTS_STREAM, naming.RECORDER_GROUP, min="-", max="+",
                                                 count=100_000, consumername=name)
            ids = [p["message_id"] for p in pending]
            if ids:
                entries += [e for e in self.stream.xclaim(naming.EVENTS_STREAM, naming.RECORDER_GROUP, self.consumer,
                                                          min_idle_time=0, message_ids=ids) if e[1]]
            self.stream.xgroup_delconsumer(naming.EVENTS_STREAM, naming.RECORDER_GROUP, name)
        return entries

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(naming.EVENTS_STREAM, naming.RECORDER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _store(self, events: list[tuple[str, CallEvent]]) -> None:
        calls = fold_all(event for _, event in events)
        rows = [event_row(entry_id, event) for entry_id, event in events]
        with get_engine(self.db_url, IDLE_TRANSACTION_TIMEOUT).begin() as conn:
            upsert_calls(conn, calls)
            insert_events(conn, rows)

    def verified(self, entries: list[Entry]) -> list[tuple[str, CallEvent]]:
        """The events of `entries` that verify with their user's key, their sealed fields opened.
        The others are set aside in the rejected stream with the reason, never written."""
        keys = self.keys.of({fields.get("user") for _, fields in entries} - {None, ""})
        events: list[tuple[str, CallEvent]] = []
        for entry_id, fields in entries:
            key = keys.get(fields.get("user", ""))
            why = signing.event_refusal(fields, key)
            if why is None:
                try:
                    events.append((entry_id, CallEvent.from_fields(signing.open_event(fields, key))))
                    continue
                except (ValueError, KeyError) as exc:
                    why = str(exc)
            self.refused += 1
            log.warning("recorder: event %s of call %s refused: %s", entry_id, fields.get("call"), why)
            self.stream.xadd(naming.EVENTS_REJECTED_STREAM, {**fields, "error": f"refused: {why}"}, maxlen=10000, approximate=True)
        return events

    def write(self, entries: list[Entry]) -> None:
        """Verify, store, acknowledge and (with `publish`) announce a batch of stream entries."""
        events = self.verified(entries)
        try:
            if events:
                self._store(events)
        except (IntegrityError, DataError):
            # A batch the database refuses (not an outage): store entry by entry and set aside
            # the ones it still refuses, so one bad event never blocks everyone's provenance.
            raw_of = dict(entries)
            for entry_id, event in events:
                try:
                    self._store([(entry_id, event)])
                except (IntegrityError, DataError) as exc:
                    self.rejected += 1
                    log.error("recorder: event %s refused (%s); kept in %s", entry_id, str(exc).splitlines()[0],
                              naming.EVENTS_REJECTED_STREAM)
                    self.stream.xadd(naming.EVENTS_REJECTED_STREAM, {**raw_of[entry_id], "error": str(exc).splitlines()[0]})
        ids = [entry_id for entry_id, _ in entries]
        pipe = self.stream.pipeline(transaction=False)
        pipe.xack(naming.EVENTS_STREAM, naming.RECORDER_GROUP, *ids)
        pipe.xdel(naming.EVENTS_STREAM, *ids)
        if self.publish and events:
            listened = self.listened({event.live_channel() for _, event in events})
            # A call's events in the order of its states: a client's queued event, sent from a
            # background thread, can reach the stream just after the worker's received. (Across
            # batches, which two threads, or two agents, publish in either order, readers fold
            # with `events.advance`, which ignores a state older than the one they have.)
            for _, event in sorted(events, key=lambda entry: RANK.get(entry[1].state or "", 0)):
                channel = event.live_channel()
                if channel in listened:
                    pipe.publish(channel, json.dumps(event.live_message()))
        pipe.execute()
        self.written += len(events)

    def listened(self, channels: set[str]) -> set[str]:
        """The live channels someone reads now: the live messages are built only for them (with
        nobody reading, that was a tenth of the recorder's work)."""
        names = [naming.LIVE_READERS_CHANNEL, *channels]
        counts = dict(self.stream.pubsub_numsub(*names))
        if counts.get(naming.LIVE_READERS_CHANNEL):
            return channels  # a reader of every channel
        return {name for name, count in counts.items() if count}

    def read(self, own_pending: bool) -> list[Entry]:
        """The next batch: this consumer's own pending entries first (after a failure), else new ones."""
        group, me = naming.RECORDER_GROUP, self.consumer
        if own_pending:
            return streamread.entries(self.stream.xreadgroup(group, me, {naming.EVENTS_STREAM: "0"}, count=BATCH))
        found = streamread.entries(self.stream.xreadgroup(group, me, {naming.EVENTS_STREAM: ">"}, count=BATCH, block=200))
        deadline = time.monotonic() + LINGER_MAX
        while 0 < len(found) < BATCH:
            # A call's events come a few ms apart: wait for the rest before writing, so that
            # PostgreSQL gets one transaction (one fsync) for many events, not one for each. While
            # they keep coming fast (a burst), keep gathering, up to LINGER_MAX: a transaction's
            # cost is mostly per batch, not per row. Bursts of 1,000 calls, interleaved: CPU per
            # call 0.53 -> 0.28 ms in PostgreSQL and 0.62 -> 0.53 ms in the agent (medians of 10).
            if self.stop_event.wait(LINGER):
                break
            more = streamread.entries(self.stream.xreadgroup(group, me, {naming.EVENTS_STREAM: ">"},
                                                             count=BATCH - len(found)))
            found += more
            if len(more) < SUSTAINED or time.monotonic() >= deadline:
                break
        return found

    def run(self) -> None:
        backoff, own_pending, last_claim = 0.5, True, 0.0
        while not self.stop_event.is_set():
            if self.helper and not own_pending and not self.backlog.wait(0.2):
                continue
            try:
                self.ensure_group()
                # One of the agent's recorders reads (and lingers) at a time, so a call's events are
                # no more split between batches than with one; the others verify and write meanwhile.
                with self.read_lock:
                    found = self.read(own_pending)
                if own_pending and not found:
                    own_pending = False
                elif not own_pending:
                    (self.backlog.set if len(found) >= BATCH else self.backlog.clear)()
                while self._take_over:
                    found += self._claim_node(self._take_over.pop())
                if time.monotonic() - last_claim > 30:
                    # Take over entries a dead recorder left pending for more than a minute.
                    last_claim = time.monotonic()
                    claimed = self.stream.xautoclaim(naming.EVENTS_STREAM, naming.RECORDER_GROUP, self.consumer,
                                                     min_idle_time=60000, start_id="0", count=BATCH)
                    found += [e for e in claimed[1] if e[1]]
                if found:
                    self.write(found)
                backoff = 0.5
            except (SQLAlchemyError, redis.RedisError, OSError) as exc:
                log.warning("recorder: %s; retrying in %.1fs (events stay queued)", str(exc).splitlines()[0], backoff)
                own_pending = True
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 10)


def consumer_name(node: str, pid: int | str) -> str:
    """A recorder's consumer in the stream's group: its node's name first, so a node's are found."""
    return f"{node}/{pid}"


class RecorderStep(Step):
    """The agent's recorder threads: started with the agent, joined last (they see the stop event themselves)."""

    def __init__(self, db_url: str, client: redis.Redis, stop: threading.Event, node: str | None = None,
                 threads: int = THREADS):
        lock, backlog = threading.Lock(), threading.Event()
        self.recorders = [Recorder(db_url, client, stop, node=node, index=i, read_lock=lock, backlog=backlog)
                          for i in range(threads)]
        self.recorder = self.recorders[0]  # the one that takes over a dead node's pending entries

    def start(self) -> None:
        for recorder in self.recorders:
            recorder.start()

    def close(self) -> None:
        for recorder in self.recorders:
            recorder.join(5)
