"""Live call states for the flow graph: a thread that folds call events into per-socket counts.

The recorder PUBLISHes every call event on `ec.<processor>.task`. Hundreds of events a second
must not become hundreds of widget messages, so the thread only counts; every `interval`
seconds it hands the sockets that changed to one `apply` callback (the only place widgets are
touched). Nothing here imports ipywidgets, so the tally is testable and reusable on its own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import redis

from elasticcode.runtime import events, naming
from elasticcode.runtime.connections import redis_client
from elasticcode.runtime.events import CallEvent

log = logging.getLogger("elasticcode.live")

PATTERN = "ec.*.task"
# Which count a call state shows in (a presentation choice; the states and their order are events.STATES).
BUCKET = {"queued": "queued", "received": "queued", "running": "running", "finished": "finished",
          "failed": "failed", "dead": "failed"}


@dataclass
class SocketState:
    """What one socket's node shows: calls seen since live states started, by current state."""

    queued: int = 0
    running: int = 0
    finished: int = 0
    failed: int = 0
    last: str | None = None  # state of the most recent event
    last_terminal: str | None = None  # finished or failed, whichever came last

    @property
    def css_class(self) -> str:
        # Work in flight wins over history, so a busy socket never looks idle.
        if self.running:
            return "running"
        if self.queued:
            return "queued"
        if self.last_terminal == "failed":
            return "failed"
        return "done" if self.finished else ""

    def line(self) -> str:
        return f"⋯{self.queued} ▶{self.running} ✓{self.finished} ✗{self.failed}"  # glyphs common fonts have


class StateTally:
    """Per-socket counts from call events; remembers each call's state (bounded) to move it between buckets."""

    def __init__(self, max_calls: int = 200_000):
        self.sockets: dict[str, SocketState] = {}
        self.calls: OrderedDict[str, tuple[str, str]] = OrderedDict()  # call -> (socket, state)
        self.max_calls = max_calls
        self.dirty: set[str] = set()
        self.absorbed = 0

    def add(self, message: Mapping[str, Any] | CallEvent) -> None:
        """Count one live message (`CallEvent.live_message()`) or event; anything else is ignored."""
        event = message if isinstance(message, CallEvent) else CallEvent.from_live(message)
        if event is None:
            return
        state, socket, call = event.state, event.socket, event.call
        if not (state and socket and call):
            return
        self.absorbed += 1
        counts = self.sockets.setdefault(socket, SocketState())
        counts.last = state
        previous = self.calls.get(call)
        # The recorder's fold: a call's state only moves forward, whatever order events arrive in.
        if events.advance(previous[1] if previous else None, event.event) is None:
            self.dirty.add(socket)
            return  # a late event of an older state: counts already reflect the newer one
        if previous:
            setattr(counts, BUCKET[previous[1]], getattr(counts, BUCKET[previous[1]]) - 1)
        setattr(counts, BUCKET[state], getattr(counts, BUCKET[state]) + 1)
        if BUCKET[state] in ("finished", "failed"):
            counts.last_terminal = BUCKET[state]
        self.calls[call] = (socket, state)
        self.calls.move_to_end(call)
        if len(self.calls) > self.max_calls:
            self.calls.popitem(last=False)  # forget the oldest call; its counts stay
        self.dirty.add(socket)

    def seed(self, totals: Iterable[tuple[str, str, int]], calls: Iterable[tuple[str, str, str]]) -> None:
        """Start from recorded history: (socket, state, count) of closed calls, and (call, socket,
        state) of calls whose events may still come (they are then moved, not counted again)."""
        for socket, state, count in totals:
            self._count(socket, state, count)
        for call, socket, state in calls:
            if state in BUCKET and call not in self.calls:
                self._count(socket, state, 1)
                self.calls[call] = (socket, state)

    def _count(self, socket: str, state: str, n: int) -> None:
        bucket = BUCKET.get(state)
        if bucket is None:
            return
        counts = self.sockets.setdefault(socket, SocketState())
        setattr(counts, bucket, getattr(counts, bucket) + n)
        if bucket in ("finished", "failed") and counts.last_terminal != "finished":
            counts.last_terminal = bucket
        self.dirty.add(socket)

    def take_dirty(self) -> dict[str, SocketState]:
        """Copies of the sockets that changed since the last call (safe to hand to another thread)."""
        changed = {name: replace(self.sockets[name]) for name in self.dirty}
        self.dirty.clear()
        return changed


Apply = Callable[[dict[str, SocketState]], bool | None]


class LiveStates:
    """The subscriber thread. `apply(changed)` runs at most once per `interval`; returning False stops it."""

    def __init__(self, url: str, apply: Apply, interval: float = 0.25, pattern: str = PATTERN,
                 seed: Callable[[StateTally], None] | None = None):
        self.url, self.apply, self.interval, self.pattern = url, apply, interval, pattern
        self.seed = seed  # loads history into the tally once subscribed: nothing between is lost
        self.tally = StateTally()
        self.batches = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def start(self, wait: float = 5.0) -> LiveStates:
        """Start the thread and wait until the subscription is active, so no early event is missed."""
        redis_client(self.url).ping()  # fail here, in the caller, when Redis is unreachable
        self._thread = threading.Thread(target=self._run, name="elasticcode-live", daemon=True)
        self._thread.start()
        self._ready.wait(wait)
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to end and wait for it; True when it has exited."""
        self._stop.set()
        thread = self._thread
        if thread and thread is not threading.current_thread():
            thread.join(timeout)
        return not (thread and thread.is_alive())

    def _flush(self) -> None:
        changed = self.tally.take_dirty()
        if changed:
            self.batches += 1
            if self.apply(changed) is False:
                self._stop.set()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = redis_client(self.url).pubsub()
                pubsub.subscribe(naming.LIVE_READERS_CHANNEL)  # so that the recorders publish (naming.py)
                pubsub.psubscribe(self.pattern)
                next_flush = time.monotonic() + self.interval
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=max(0.0, min(next_flush - time.monotonic(), 0.25)))
                    if message:
                        self._absorb(message)
                    if time.monotonic() >= next_flush:
                        self._flush()
                        next_flush = time.monotonic() + self.interval
                backoff = 0.5
            except (redis.RedisError, OSError) as exc:
                self.error = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
                log.warning("live states: %s; resubscribing in %.1fs", self.error, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10)
            except Exception:  # a broken apply must not kill the kernel's thread silently
                log.exception("live states stopped")
                self._stop.set()
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: S110 - closing a dead connection
                        pass

    def _absorb(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "psubscribe":
            if self.seed is not None and not self._ready.is_set():
                try:
                    self.seed(self.tally)
                except Exception:  # noqa: BLE001 - counts from now on are still worth showing
                    log.exception("live states: history counts not loaded")
            self._ready.set()
        elif kind == "pmessage":
            try:
                body = json.loads(message["data"])
            except (ValueError, TypeError):
                return  # not ours; channels are shared with `flow listen`
            if isinstance(body, dict):
                self.tally.add(body)
