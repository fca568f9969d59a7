"""`/ws/events`, `/ws/metrics` and the Prometheus `/metrics`: the live hubs, per user.

A WebSocket sends its token in the `Authorization: Bearer ...` header of the handshake (never in
the URL), or, from a browser (which cannot set that header), as the subprotocol `bearer.<token>`.
Without a valid one the handshake is refused (HTTP 401 where the server can say so, else close
code 4401). While connected, the token is checked again every few seconds: revoking it
closes the socket (4401). A user sees the events and figures of their own processors only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi import APIRouter, Query, Response, WebSocket
from sqlalchemy import select
from starlette.websockets import WebSocketDisconnect

from ..db import model as m
from ..errors import ElasticCodeError
from .db import Unauthorized, token_role
from .deps import Api, ApiContext, Bearer, header_token
from .live import EVENT_QUEUE, METRICS_QUEUE, Subscriber, Visible
from .problems import responses

router = APIRouter()
REFRESH = 5.0  # seconds between two checks of the token and of the user's processors
CLOSE_UNAUTHORIZED = 4401
BATCH = 500  # messages a client's pump takes at once (one ownership query for their calls)
KNOWN_CALLS = 20_000  # calls whose ownership a connection remembers


def _own_calls(api: ApiContext, role: str, ids: list[str]) -> set[str]:
    """Which of these calls are the user's: row-level security answers (and needs LS_CALLS, as `flow ls calls`)."""
    with api.as_role(role) as session:
        rows = session.execute(select(m.Call.id).where(m.Call.id.in_(ids))).scalars()
        return {str(r) for r in rows}


def _refresh(api: ApiContext, token_text: str, visible: Visible) -> None:
    with api.as_user(token_text) as (_role, session):
        rows = session.execute(select(m.Processor.id, m.Processor.name)).all()
    visible.processor_ids = {str(r[0]) for r in rows}
    visible.processor_names = {r[1] for r in rows}


def _subprotocol_token(websocket: WebSocket) -> str | None:
    """A browser cannot set headers on a WebSocket: it may offer the subprotocols `bearer` and
    `bearer.<token>` instead (still a header, never the URL); the server answers with `bearer`."""
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    found = [p[len("bearer."):] for p in offered if p.startswith("bearer.")]
    return found[0] if found else None


async def _open(websocket: WebSocket, api: ApiContext) -> tuple[str, Visible] | None:
    token_text = header_token(websocket.headers.get("authorization"))
    subprotocol = None
    if token_text is None:
        token_text = _subprotocol_token(websocket)
        subprotocol = "bearer" if token_text else None
    try:
        role = await anyio.to_thread.run_sync(token_role, api.settings.db, token_text)
        visible = Visible(role)
        await anyio.to_thread.run_sync(_refresh, api, token_text, visible)
    except Unauthorized as exc:
        await _deny(websocket, str(exc))
        return None
    await websocket.accept(subprotocol=subprotocol)
    return token_text, visible


async def _deny(websocket: WebSocket, detail: str) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        from .problems import problem

        await websocket.send_denial_response(problem(401, detail))
    else:
        await websocket.close(code=CLOSE_UNAUTHORIZED, reason=detail[:120])


async def _serve(websocket: WebSocket, api: ApiContext, token_text: str, visible: Visible, subscriber: Subscriber,
                 hub_subscribers: set, render: Callable[[list[dict]], Awaitable[list[dict]]]) -> None:
    async def pump() -> None:
        while True:
            batch = [await subscriber.queue.get()]
            while not subscriber.queue.empty() and len(batch) < BATCH:
                batch.append(subscriber.queue.get_nowait())
            for out in await render(batch):
                await websocket.send_text(json.dumps(out, default=str))

    async def listen() -> None:
        while True:
            await websocket.receive_text()  # clients say nothing; this notices them leaving

    async def recheck() -> None:
        while True:
            await asyncio.sleep(REFRESH)
            try:
                await anyio.to_thread.run_sync(_refresh, api, token_text, visible)
            except Unauthorized:
                await websocket.close(code=CLOSE_UNAUTHORIZED, reason="the token was revoked")
                return
            except ElasticCodeError:
                continue  # the database is away: keep the last view

    hub_subscribers.add(subscriber)
    tasks = [asyncio.create_task(t()) for t in (pump, listen, recheck)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hub_subscribers.discard(subscriber)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                await task


@router.websocket("/ws/events")
async def ws_events(websocket: WebSocket, processor: str | None = Query(None), socket: str | None = Query(None),
                    tracking: str | None = Query(None)):
    """Call events as the recorders store them: `{"type": "event", "state", "call", "socket", "room", "date", ...}`."""
    api: ApiContext = websocket.app.state.api
    opened = await _open(websocket, api)
    if opened is None:
        return
    token_text, visible = opened

    def admit(message: dict) -> bool:
        if message.get("type") != "event":
            return True
        if not visible.owns(message.get("owner"), message.get("room")):
            return False
        if processor and message.get("room") != processor:
            return False
        if socket and message.get("socket") != socket:
            return False
        return not tracking or tracking in (message.get("tracking"), message.get("call"))

    # Live messages name a call's processor, not its owner, and processor names are unique per owner
    # only: a call whose message does not name its owner is sent once row-level security says it
    # is the user's (the recorder commits a call before it publishes its events).
    known: OrderedDict[str, bool] = OrderedDict()

    async def render(batch: list[dict]) -> list[dict]:
        unknown = list({m["call"] for m in batch if m.get("type") == "event" and m.get("owner") is None
                        and m.get("call") not in known})
        if unknown:
            try:
                mine = await anyio.to_thread.run_sync(_own_calls, api, visible.role, unknown)
            except ElasticCodeError:  # the database is away: send nothing that may not be the user's
                mine = set()
                unknown = []
            for call in unknown:
                known[call] = call in mine
            while len(known) > KNOWN_CALLS:
                known.popitem(last=False)
        return [m for m in batch if m.get("type") != "event" or m.get("owner") is not None or known.get(m.get("call"))]

    subscriber = Subscriber(admit, EVENT_QUEUE)
    await api.hubs.use()
    await _serve(websocket, api, token_text, visible, subscriber, api.hubs.events.subscribers, render)


@router.websocket("/ws/metrics")
async def ws_metrics(websocket: WebSocket, processor: str | None = Query(None), node: str | None = Query(None)):
    """Once a second: `{"type": "metrics", "nodes": [{"node", "cpus", "processors": [...]}], "sockets": [...]}`."""
    api: ApiContext = websocket.app.state.api
    opened = await _open(websocket, api)
    if opened is None:
        return
    token_text, visible = opened
    subscriber = Subscriber(lambda _m: True, METRICS_QUEUE)

    async def render(batch: list[dict]) -> list[dict]:
        return [api.hubs.metrics.view(visible, node=node, processor=processor, ts=m["ts"]) if m.get("type") == "tick"
                else m for m in batch]

    await api.hubs.use()
    await _serve(websocket, api, token_text, visible, subscriber, api.hubs.metrics.subscribers, render)


def _prometheus(view: dict[str, Any]) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class Figures:
        def collect(self):
            gauges = {
                "queue": ("elasticcode_queue_depth", "Calls waiting for the processor on the node"),
                "busy": ("elasticcode_busy_processes", "Pool processes running a call"),
                "idle": ("elasticcode_idle_processes", "Pool processes without a call"),
                "pool": ("elasticcode_pool_processes", "Pool processes"),
                "share": ("elasticcode_cpu_share", "The node's CPUs the agent gives the processor now"),
                "calls_per_s": ("elasticcode_calls_per_second", "Calls finished per second (agent's interval)"),
                "failures_per_s": ("elasticcode_failures_per_second", "Calls failed per second (last 10 s)"),
            }
            families = {k: GaugeMetricFamily(n, h, labels=["node", "processor"]) for k, (n, h) in gauges.items()}
            finished = CounterMetricFamily("elasticcode_calls_finished", "Calls finished on the node since its agent started",
                                           labels=["node", "processor"])
            for record in view["nodes"]:
                for p in record["processors"]:
                    labels = [record["node"], p["processor"]]
                    for key, family in families.items():
                        family.add_metric(labels, float(p.get(key) or 0))
                    finished.add_metric(labels, float(p.get("finished") or 0))
            yield from families.values()
            yield finished
            duration = GaugeMetricFamily("elasticcode_call_duration_seconds",
                                         "Call duration quantiles over the last 60 s, per socket",
                                         labels=["processor", "socket", "quantile"])
            socket_rate = GaugeMetricFamily("elasticcode_socket_calls_per_second", "Calls ended per second (last 10 s)",
                                            labels=["processor", "socket"])
            socket_fail = GaugeMetricFamily("elasticcode_socket_failures_per_second", "Calls failed per second (last 10 s)",
                                            labels=["processor", "socket"])
            ended = CounterMetricFamily("elasticcode_socket_calls", "Calls ended since the API server started",
                                        labels=["processor", "socket", "outcome"])
            for s in view["sockets"]:
                for q in ("p50", "p95"):
                    if s[q] is not None:
                        duration.add_metric([s["processor"], s["socket"], "0.5" if q == "p50" else "0.95"], s[q])
                socket_rate.add_metric([s["processor"], s["socket"]], s["calls_per_s"])
                socket_fail.add_metric([s["processor"], s["socket"]], s["failures_per_s"])
                ended.add_metric([s["processor"], s["socket"], "finished"], s["finished"])
                ended.add_metric([s["processor"], s["socket"], "failed"], s["failed"])
            yield from (duration, socket_rate, socket_fail, ended)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Figures())
    return generate_latest(registry)


@router.get("/metrics", tags=["live"], summary="Prometheus figures of your processors, per node and socket",
            responses={200: {"description": "Prometheus text format",
                             "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}}},
                       **responses(401, 503)}, operation_id="prometheus_metrics")
def prometheus_metrics(api: Api, bearer: Bearer) -> Response:
    visible = Visible("")
    with api.as_user(bearer) as (role, session):
        rows = session.execute(select(m.Processor.id, m.Processor.name)).all()
    visible.role = role
    visible.processor_ids = {str(r[0]) for r in rows}
    visible.processor_names = {r[1] for r in rows}
    anyio.from_thread.run(api.hubs.use)  # the first scrape starts the live feeds (per socket: from then on)
    return Response(_prometheus(api.hubs.metrics.view(visible)), media_type="text/plain; version=0.0.4; charset=utf-8")
