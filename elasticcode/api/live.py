"""Live figures: call events and per-node metrics, fanned out to WebSockets and Prometheus.

- Events: one Redis pub/sub subscription per server (`ec.*.task`, where the agents' recorders
  publish each recorded event's `live_message()`, `elasticcode/runtime/events.py`), read in a
  thread and handed to the event loop. From them the hub also keeps, per processor and socket,
  a sliding window of durations (prerun to postrun) and outcomes: failures/s, p50 and p95.
- Metrics: each node's latest record (`elasticcode/runtime/metrics.py`, `latest`) read once a
  second, joined with the windows, and sent to every `/ws/metrics` client.

Each client has a bounded queue. One that falls behind is not allowed to grow the server's
memory: its queue is emptied, and the next thing it receives says how many messages it missed
(`{"type": "skipped", "missed": N}`), then it goes on from the newest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..runtime import naming
from ..runtime.events import FAILURE, LIVE_CHANNEL, POSTRUN, PRERUN, CallEvent
from .sequence import HOLD, MAX_CALLS, Sequencer

log = logging.getLogger("elasticcode.api")
WINDOW = 60.0  # seconds of durations behind p50/p95
RATE_WINDOW = 10.0  # seconds behind calls/s and failures/s of sockets
MAX_STARTED = 100_000  # calls whose prerun time is kept while they run (the oldest are forgotten)
MAX_SAMPLES = 20_000  # samples kept per socket window
EVENT_QUEUE = 2_000  # messages a WebSocket client may have waiting
METRICS_QUEUE = 5
IDLE_STOP = 300.0  # seconds without a live client or a /metrics scrape before the hubs stop reading
REAP_EVERY = 10.0


class Subscriber:
    """A client's bounded queue with skip-ahead."""

    def __init__(self, admit: Callable[[dict], bool], size: int):
        self.admit, self.queue, self.missed = admit, asyncio.Queue(size), 0

    def offer(self, message: dict) -> None:
        if not self.admit(message):
            return
        if self.queue.full():
            dropped = self.queue.qsize()
            while not self.queue.empty():
                self.queue.get_nowait()
            self.missed += dropped
            self.queue.put_nowait({"type": "skipped", "missed": self.missed,
                                   "detail": "this client fell behind: messages were dropped, it goes on from the newest"})
            self.missed = 0
        self.queue.put_nowait(message)


@dataclass
class Window:
    """One socket's recent calls: (end time, duration or None, failed)."""

    samples: deque = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    finished: int = 0
    failed: int = 0

    def add(self, at: float, duration: float | None, failed: bool) -> None:
        self.samples.append((at, duration, failed))
        if failed:
            self.failed += 1
        else:
            self.finished += 1

    def figures(self, now: float) -> dict[str, float | None]:
        while self.samples and self.samples[0][0] < now - WINDOW:
            self.samples.popleft()
        recent = [s for s in self.samples if s[0] >= now - RATE_WINDOW]
        durations = sorted(d for _, d, _ in self.samples if d is not None)
        return {"calls_per_s": len(recent) / RATE_WINDOW, "failures_per_s": sum(1 for s in recent if s[2]) / RATE_WINDOW,
                "p50": _quantile(durations, 0.5), "p95": _quantile(durations, 0.95),
                "finished": self.finished, "failed": self.failed}


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]  # nearest rank


class EventHub:
    """Reads the live channels in a thread; hands each message to the loop; keeps the windows."""

    def __init__(self, client_factory: Callable[[], Any]):
        self.client_factory = client_factory
        self.subscribers: set[Subscriber] = set()
        self.windows: dict[tuple[str | None, str, str], Window] = {}  # (owner, processor, socket)
        self.started: OrderedDict[str, float] = OrderedDict()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.sequencer = Sequencer()
        self.owners: OrderedDict[str, str] = OrderedDict()  # call -> owner, where one is known (`_owner`)
        self._indexed: Any = None  # the route table `_index` was built from
        self._index = {}
        self.expiry: asyncio.Task | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = threading.Thread(target=self._run, name="api-events", daemon=True)
        self.thread.start()
        self.expiry = loop.create_task(self._expire())

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(HOLD / 4)
            for message in self.sequencer.expire(time.monotonic()):
                self._deliver(message)

    def close(self) -> None:
        self.stop.set()
        if self.expiry:
            self.expiry.cancel()

    def _owner(self, routes: Any, message: dict) -> str | None:
        """The owner of a live message: the one its own `owner` names, else the one owner whose
        published route is this (processor, socket); None when that is not one owner."""
        if message.get("owner"):
            return message["owner"]
        try:
            table = routes.table()
        except Exception:  # noqa: BLE001 - Redis away: unknown owner, figures shown to nobody
            return None
        if table is not self._indexed:
            self._index: dict[tuple[str, str], set[str]] = {}
            for route in table:
                self._index.setdefault((route.processor, route.socket), set()).add(route.owner)
            self._indexed = table
        owners = self._index.get((message.get("room"), message.get("socket")), set())
        return next(iter(owners)) if len(owners) == 1 else None

    def _run(self) -> None:
        from ..runtime.routes import PublishedRoutes

        pattern = naming.channel("*", LIVE_CHANNEL)
        while not self.stop.is_set():
            pubsub = None
            try:
                client = self.client_factory()
                routes = PublishedRoutes(client, ttl=2.0)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(naming.LIVE_READERS_CHANNEL)  # so that the recorders publish (naming.py)
                pubsub.psubscribe(pattern)
                self.ready.set()
                while not self.stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message and message.get("type") == "pmessage":
                        try:
                            parsed = json.loads(message["data"])
                        except (TypeError, ValueError):
                            continue
                        if isinstance(parsed, dict):
                            self.loop.call_soon_threadsafe(self.dispatch, parsed, self._owner(routes, parsed))
            except Exception as exc:  # noqa: BLE001 - Redis away: retry, the server stays up
                log.warning("live events: %s; reconnecting in 1s", str(exc).splitlines()[0] if str(exc) else exc)
                self.stop.wait(1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()

    def dispatch(self, message: dict, owner: str | None = None) -> None:
        if owner is not None:
            self.owners[message.get("call")] = owner
            if len(self.owners) > MAX_CALLS:
                self.owners.popitem(last=False)
        for ready in self.sequencer.push(message, time.monotonic()):
            self._deliver(ready)

    def _deliver(self, message: dict) -> None:
        event = CallEvent.from_live(message)
        if event is None:
            return
        self._count(event, self.owners.get(event.call), message)
        out = {"type": "event", **message}
        for subscriber in list(self.subscribers):
            subscriber.offer(out)

    def _count(self, event: CallEvent, owner: str | None, message: dict) -> None:
        if event.event == PRERUN:
            self.started[event.call] = event.ts
            if len(self.started) > MAX_STARTED:
                self.started.popitem(last=False)
        elif event.event in (POSTRUN, FAILURE):
            began = self.started.pop(event.call, None)
            duration = message.get("duration")
            if not isinstance(duration, (int, float)):
                duration = max(0.0, event.ts - began) if began is not None else None
            key = (owner, event.processor or "", event.socket or "")
            self.windows.setdefault(key, Window()).add(time.time(), duration, event.event != POSTRUN)

    def socket_figures(self) -> list[dict[str, Any]]:
        now = time.time()
        return [{"owner": owner, "processor": processor, "socket": socket, **window.figures(now)}
                for (owner, processor, socket), window in list(self.windows.items())]


@dataclass
class Visible:
    """What one user may see live: their role and their processors (refreshed by the connection)."""

    role: str
    processor_ids: set[str] = field(default_factory=set)
    processor_names: set[str] = field(default_factory=set)

    def owns(self, owner: str | None, processor: str | None) -> bool:
        if owner is not None:  # live messages that name their owner
            return owner == self.role
        return processor in self.processor_names


class MetricsHub:
    """Once a second: every node's latest record, for `/ws/metrics` clients and `/metrics`."""

    def __init__(self, client_factory: Callable[[], Any], events: EventHub):
        self.client_factory, self.events = client_factory, events
        self.nodes: list[Any] = []  # NodeMetrics
        self.subscribers: set[Subscriber] = set()
        self.figures: list[dict[str, Any]] = []  # per socket, with its owner (EventHub.socket_figures)
        self.task: asyncio.Task | None = None
        self.ticked = asyncio.Event()  # set after the first figures are in
        self._client = None

    def _latest(self) -> list[Any]:
        from ..runtime import metrics

        if self._client is None:
            self._client = self.client_factory()
        return metrics.latest(self._client)

    async def run(self) -> None:
        import anyio

        next_tick = time.monotonic()
        # A thread of its own: under the default limiter the read queued behind a burst of request
        # handlers (200 sends held its 40 threads) and ticks came 0.4-0.6 s late.
        reader = anyio.CapacityLimiter(1)
        while True:
            try:
                self.nodes = await anyio.to_thread.run_sync(self._latest, limiter=reader)
            except Exception as exc:  # noqa: BLE001 - Redis away: keep the last figures, try again
                log.warning("live metrics: %s", str(exc).splitlines()[0] if str(exc) else exc)
                self._client = None
            self.figures = self.events.socket_figures()  # once per tick, whoever listens
            self.ticked.set()
            tick = {"type": "tick", "ts": time.time()}
            for subscriber in list(self.subscribers):
                subscriber.offer(tick)
            next_tick += 1.0  # on a fixed schedule: a late tick does not push the next ones
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

    def view(self, visible: Visible, node: str | None = None, processor: str | None = None,
             ts: float | None = None) -> dict[str, Any]:
        """The figures `visible`'s user may see: per node and processor, and per socket."""
        # Figures whose owner is not known for sure (see EventHub._owner) are shown to nobody.
        windows = {(f["processor"], f["socket"]): {k: v for k, v in f.items() if k != "owner"}
                   for f in self.figures if f["owner"] is not None and f["owner"] == visible.role}
        nodes = []
        for record in self.nodes:
            if node and record.node != node:
                continue
            rows = []
            for p in record.processors:
                if p.processor_id not in visible.processor_ids or (processor and p.processor != processor):
                    continue
                sockets = [w for (proc, _), w in windows.items() if proc == p.processor]
                rows.append({**p.to_dict(), "failures_per_s": sum(w["failures_per_s"] for w in sockets),
                             "p50": _merged(sockets, "p50"), "p95": _merged(sockets, "p95")})
            nodes.append({"node": record.node, "cpus": record.cpus, "ts": record.ts, "processors": rows})
        sockets = [w for w in windows.values() if not processor or w["processor"] == processor]
        return {"type": "metrics", "ts": ts or time.time(), "nodes": nodes, "sockets": sockets}


def _merged(sockets: list[dict], key: str) -> float | None:
    values = [s[key] for s in sockets if s[key] is not None]
    return max(values) if values else None  # the slowest socket's: a processor is as slow as that


class Hubs:
    """The live feeds, read only while someone uses them.

    Reading every call's live message costs CPU on every call, which on a small machine is taken
    from the calls themselves (`flow up` starts this server for everyone). So the hubs start
    with the first `/ws/events`, `/ws/metrics` or `/metrics` request and stop once nobody has
    listened for `IDLE_STOP` seconds (a Prometheus scrape every 15 s keeps them going)."""

    def __init__(self, client_factory: Callable[[], Any]):
        self.client_factory = client_factory
        self.events = EventHub(client_factory)
        self.metrics = MetricsHub(client_factory, self.events)
        self.running = False
        self.last_used = 0.0
        self.reaper: asyncio.Task | None = None

    def start(self) -> None:
        """At the server's start: only the task that stops idle hubs."""
        self.reaper = asyncio.get_running_loop().create_task(self._reap())

    async def use(self, wait: float = 5.0) -> None:
        """Start the hubs if they are stopped (waiting up to `wait` s for their first figures)."""
        self.last_used = time.monotonic()
        if not self.running:
            loop = asyncio.get_running_loop()
            self.events = EventHub(self.client_factory)  # fresh ones: a stopped hub's thread has ended
            self.metrics = MetricsHub(self.client_factory, self.events)
            self.events.start(loop)
            self.metrics.task = loop.create_task(self.metrics.run())
            self.running = True
        import anyio

        await anyio.to_thread.run_sync(self.events.ready.wait, wait)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.metrics.ticked.wait(), wait)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY)
            idle = time.monotonic() - self.last_used > IDLE_STOP
            if self.running and idle and not self.events.subscribers and not self.metrics.subscribers:
                await self._stop()

    async def _stop(self) -> None:
        self.running = False
        self.events.close()
        if self.metrics.task:
            self.metrics.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.metrics.task

    async def close(self) -> None:
        if self.reaper:
            self.reaper.cancel()
        await self._stop()
