"""The call-event contract: the one definition of what a call event is and how events fold into a call.

Clients and workers emit events to a Redis stream; the agents' recorders fold them into call rows
in PostgreSQL and publish each one on the live channel, where the notebook graph folds them into
counts. All of them use the names, the record and the fold defined here, so a new field or state
changes this module only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any

import redis

from . import naming, signing

# Event names, in the order a call goes through them.
QUEUED = "queued"  # the client sent the message
RECEIVED = "received"  # a worker took it off the queue
PRERUN = "prerun"  # the function starts
POSTRUN = "postrun"  # the function returned
FAILURE = "failure"  # the function raised
DEAD = "dead"  # dead-lettered after too many deliveries
EVENT_NAMES = (QUEUED, RECEIVED, PRERUN, POSTRUN, FAILURE, DEAD)

# Call states, ranked: a call's state only moves forward, whatever order its events arrive in
# (a late `received` never undoes `finished`; a redelivery that finishes overrides `failed`; a
# dead-lettered call retried with `flow dead retry` moves on from `dead`).
STATES = ("queued", "received", "running", "dead", "failed", "finished")
RANK = {state: rank for rank, state in enumerate(STATES)}
STATE_OF_EVENT = {QUEUED: "queued", RECEIVED: "received", PRERUN: "running", POSTRUN: "finished",
                  FAILURE: "failed", DEAD: "dead"}
ENDING_EVENTS = (POSTRUN, FAILURE, DEAD)

# A call row, as the recorder writes it and history() reads it: column -> kind.
CALL_COLUMNS: dict[str, str] = {
    "id": "text", "name": "text", "state": "text", "owner": "text", "processor": "text", "tracking": "text",
    "parent": "text", "argument": "text", "worker": "text", "host": "text", "deliveries": "int",
    "created": "time", "received": "time", "started": "time", "finished": "time", "duration": "float",
    "error": "text", "result": "json",
    "replay_of": "text", "commit": "text", "cpu_seconds": "float", "peak_memory": "int", "inputs": "json",
}
# What a listing of calls shows (`flow ls calls`, call trees).
CALL_SUMMARY = ("id", "name", "state", "owner", "received", "started", "finished", "duration", "tracking", "parent",
                "worker", "host")
RESULT_LIMIT = 65536  # bytes of JSON result kept with the event (and so in the call row)
LIVE_CHANNEL = "task"  # `flow listen -c task`


def advance(current: str | None, event: str) -> str | None:
    """The state after `event` for a call now in `current`, or None when the event is older news."""
    state = STATE_OF_EVENT.get(event)
    if state is None or (current is not None and RANK[state] < RANK[current]):
        return None
    return state


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One call event. On the stream every field is a string; absent fields are left out."""

    call: str
    event: str
    ts: float
    socket: str | None = None
    processor: str | None = None
    tracking: str | None = None
    parent: str | None = None
    argument: str | None = None
    user: str | None = None
    worker: str | None = None
    host: str | None = None
    duration: float | None = None
    deliveries: int | None = None
    result: str | None = None  # the result's JSON text, when small enough
    error: str | None = None
    trace: str | None = None
    commit: str | None = None  # the git commit of the code that ran it (prerun and after)
    inputs: str | None = None  # {"args": [...], "kwargs": {...}} as JSON text, on `queued` (for replay)
    replay_of: str | None = None  # the call this one replays, on `queued`
    cpu_seconds: float | None = None  # CPU time the function used, on the ending event
    peak_memory: int | None = None  # peak resident bytes of the pool process during the call, same
    # The run's start (its prerun's time), on the ending event: the run that ends is the latest
    # delivery, and its start must win over an earlier delivery's prerun written after it (a dead
    # node's events, claimed by another recorder, can reach PostgreSQL in a later batch).
    started: float | None = None

    @classmethod
    def now(cls, call: str, event: str, **values: Any) -> CallEvent:
        return cls(call, event, time.time(), **values)

    def to_fields(self) -> dict[str, str]:
        out = {"call": self.call, "event": self.event, "ts": repr(self.ts)}
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = value if isinstance(value, str) else json.dumps(value)
        return out

    @classmethod
    def from_fields(cls, e: Mapping[str, str]) -> CallEvent:
        """From a stream entry's fields, decoded to text; unknown fields are ignored."""
        get = e.get
        values = [get(name) or None for name in _OPTIONAL]
        for i, kind in _NUMERIC:
            if values[i] is not None:
                values[i] = kind(values[i])
        return cls(e["call"], e["event"], float(e["ts"]), *values)

    @property
    def state(self) -> str | None:
        return STATE_OF_EVENT.get(self.event)

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.ts, tz=timezone.utc)

    def live_message(self) -> dict[str, Any]:
        """What `flow listen -c task` prints and the notebook graph counts (channel `ec.<processor>.task`)."""
        message = {"channel": LIVE_CHANNEL, "state": self.event, "call": self.call, "socket": self.socket,
                   "date": self.at.isoformat(), "room": self.processor}
        # Who and which flow run: the API server filters a user's events by them (`/ws/events`).
        for key, value in (("owner", self.user), ("tracking", self.tracking), ("duration", self.duration),
                           ("error", self.error)):
            if value:
                message[key] = value
        return message

    @classmethod
    def from_live(cls, message: Mapping[str, Any]) -> CallEvent | None:
        """The event inside a live message, or None when the message is not a call event."""
        call, event = message.get("call"), message.get("state")
        if not (isinstance(call, str) and call and isinstance(event, str)):
            return None
        try:
            ts = datetime.fromisoformat(message["date"]).timestamp()
        except (KeyError, TypeError, ValueError):
            ts = 0.0  # counting does not need the time
        return cls(call, event, ts, socket=message.get("socket"), processor=message.get("room"), error=message.get("error"))

    def live_channel(self) -> str:
        return naming.channel(self.processor or "unknown", LIVE_CHANNEL)


_OPTIONAL = tuple(f.name for f in fields(CallEvent))[3:]
_NUMERIC = tuple((_OPTIONAL.index(name), kind) for name, kind in (("duration", float), ("deliveries", int),
                                                                   ("cpu_seconds", float), ("peak_memory", int),
                                                                   ("started", float)))


def fold(row: dict[str, Any] | None, event: CallEvent) -> dict[str, Any]:
    """Fold one event into a call row (CALL_COLUMNS); pure: returns the row it was given, updated.
    The JSON columns (`result`, `inputs`) keep the JSON text the event carries: the recorder hands
    it to PostgreSQL as it is, which parses it into jsonb (a JSON `null` result is no result)."""
    at = event.at
    if row is None:
        row = {"id": event.call, "state": "queued", "created": at}
    elif event.user and row.get("owner") not in (None, event.user):
        return row  # a call is its user's: another user's event about it is not news about it
    state = advance(row["state"], event.event)
    if state:
        row["state"] = state
    for key in ("processor", "tracking", "parent", "argument", "worker", "host", "commit", "replay_of"):
        value = getattr(event, key)
        if value:
            row[key] = value
    if event.socket:
        row["name"] = event.socket
    if event.user:
        row["owner"] = event.user
    if event.event == RECEIVED:
        row["received"] = row.get("received") or at
    elif event.event == PRERUN:
        row["started"] = at
    elif event.event in ENDING_EVENTS:
        row["finished"] = at
        if event.started:
            row["started"] = datetime.fromtimestamp(event.started, tz=timezone.utc)
        if event.duration:
            row["duration"] = event.duration
        if event.error:
            row["error"] = event.error
        if event.result and event.result != "null":
            row["result"] = event.result
        if event.cpu_seconds is not None:
            row["cpu_seconds"] = event.cpu_seconds
        if event.peak_memory is not None:
            row["peak_memory"] = event.peak_memory
    if event.inputs:
        row["inputs"] = event.inputs
    if event.deliveries:
        row["deliveries"] = max(event.deliveries, row.get("deliveries", 0))
    return row


def fold_all(events: Iterable[CallEvent]) -> dict[str, dict[str, Any]]:
    """Each call's events folded into its row, oldest first: where and when a call ran come from
    its latest delivery, and a batch can hold an earlier one's events after a later one's (those a
    dead node's recorder had read, claimed when the node is marked down, as its calls run again)."""
    rows: dict[str, dict[str, Any]] = {}
    for event in sorted(events, key=_time):
        rows[event.call] = fold(rows.get(event.call), event)
    return rows


def _time(event: CallEvent) -> float:
    return event.ts


class EventStream:
    """Appends call events to the durable stream the recorders drain (pass `pipe` to batch)."""

    def __init__(self, client: redis.Redis):
        self.client = client

    def emit(self, event: CallEvent, pipe: Any = None) -> None:
        (pipe or self.client).xadd(naming.EVENTS_STREAM, stream_fields(event))


def stream_fields(event: CallEvent) -> dict[str, str]:
    """An event as it goes on the stream: signed, its result sealed, for its user (`signing.py`)."""
    return signing.sign_event(event.to_fields())


__all__ = ["CallEvent", "EventStream", "stream_fields", "fold", "fold_all", "advance",
           "EVENT_NAMES", "STATES", "RANK", "STATE_OF_EVENT", "CALL_COLUMNS", "CALL_SUMMARY"]
