"""One Celery task per socket: run the function, record events, forward along plugs.

The hot path per call: one pipelined Redis round trip (delivery count + prerun event + the
routes' version), written before the function and, for a first delivery, read once Celery has
stored the result, so the caller never waits for it. One publish per plug, then the postrun
event, follow after Celery has stored the result. Nothing waits for PostgreSQL; the agents'
recorders write the events in batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable
from itertools import chain
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Ignore

from . import codec, naming
from .backpressure import BackPressure, QueueGauge
from .connections import SentAhead
from .cost import CostMeter
from .events import DEAD, FAILURE, POSTRUN, PRERUN, QUEUED, RESULT_LIMIT, CallEvent, EventStream, stream_fields
from .joins import Joins
from .routes import PublishedRoutes, Route
from .workerspec import DEFAULT_MAX_DELIVERIES

logger = logging.getLogger("elasticcode.worker")


def _header(request: Any, key: str) -> str | None:
    value = getattr(request, key, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(key)
    return value


# The headers that make a call what it is: kept with a dead letter, so a retry sends the same call.
CALL_HEADERS = (naming.H_TRACKING, naming.H_PARENT, naming.H_ARGUMENT, naming.H_USER, naming.H_PLUG,
                naming.H_SIGNATURE, naming.H_COMMIT, naming.H_PLUGS)


def _call_headers(headers: dict) -> dict:
    return {k: headers[k] for k in CALL_HEADERS if headers.get(k) is not None}


class SocketRuntime:
    """What the tasks of one worker share: the event stream, joins and the published routes."""

    def __init__(self, app: Celery, redis_client, processor: str, owner: str, worker_name: str, host: str,
                 max_deliveries: int = DEFAULT_MAX_DELIVERIES, call_key: str | None = None, commit: str | None = None):
        self.app, self.redis = app, redis_client
        self.processor, self.owner, self.worker_name, self.host = processor, owner, worker_name, host
        self.call_key = call_key  # calls run only if signed with it (runtime/signing.py)
        self.commit = commit  # the git commit of the code this worker runs (recorded with each call)
        self.events, self.joins, self.routes = EventStream(redis_client), Joins(redis_client), PublishedRoutes(redis_client)
        self.max_deliveries = max_deliveries
        self.meter = CostMeter()
        self.pressure = BackPressure(QueueGauge(app, app.conf.broker_url), redis_client, owner, worker_name)
        self._ahead: tuple[Any, SentAhead] | None = None  # this process's call whose prerun replies are unread

    # -- the call ---------------------------------------------------------------------------
    # Nothing on the way to a first delivery's result waits for a round trip (its prerun replies
    # are read once the result is stored); the postrun event and the plugs go out from
    # on_success/on_failure, which Celery runs after storing the result and before acking the
    # message, so nothing is lost on a crash.

    def run(self, task: Any, socket: str, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        request = task.request
        call_id = request.id
        prerun = CallEvent.now(call_id, PRERUN, socket=socket, processor=self.processor,
                               tracking=_header(request, naming.H_TRACKING) or call_id,
                               parent=_header(request, naming.H_PARENT), argument=_header(request, naming.H_ARGUMENT),
                               user=_header(request, naming.H_USER), worker=self.worker_name, host=self.host,
                               commit=self.commit)
        key = naming.deliveries_key(call_id)
        commands = [("INCR", key), ("EXPIRE", key, naming.DELIVERY_TTL_SECONDS),
                    ("XADD", naming.EVENTS_STREAM, "*", *chain.from_iterable(stream_fields(prerun).items())),
                    ("GET", naming.ROUTES_VERSION_KEY)]
        self._settle()  # a call that ended without on_success/on_failure (Ignore, Retry) left its replies
        if not (request.delivery_info or {}).get("redelivered"):
            # A first delivery is delivery 1 by definition: its round trip runs beside the function
            # and the storing of its result, and its replies are read when its closing event is
            # made. Every redelivery (kombu's restores and RabbitMQ's requeues mark it) waits for
            # its count first, to dead-letter a message that keeps killing its process.
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, OSError):
                self._ahead = (request, SentAhead(self.redis, commands))
        if self._ahead is None:
            replies = self._pipeline(commands)
            deliveries, request.ec_routes = replies[0], replies[-1]
            if deliveries > self.max_deliveries:
                self._dead_letter(task, prerun, args, kwargs, deliveries)
        else:
            deliveries = 1
        request.ec_prerun, request.ec_deliveries, request.ec_started = prerun, deliveries, time.time()
        pinned = _header(request, naming.H_COMMIT)
        if pinned and self.commit and pinned != self.commit:
            raise CommitMismatch(f"this replay runs only at commit {pinned[:12]}, and worker {self.worker_name} runs "
                                 f"{self.commit[:12]} (the processor moved on meanwhile): replay with --latest-code")
        cpu = self.meter.start()
        try:
            return func(*args, **kwargs)
        finally:
            request.ec_cost = self.meter.stop(cpu)

    def _pipeline(self, commands: list[tuple]) -> list:
        pipe = self.redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute()

    def _settle(self) -> None:
        """Read the replies to a prerun round trip sent ahead (a pool process runs one call at a time)."""
        if self._ahead is None:
            return
        (request, ahead), self._ahead = self._ahead, None
        try:
            replies = ahead.replies()
        except (redis.RedisError, OSError) as exc:
            # The call ran and its result stands; plugs read the routes' version themselves.
            logger.warning("call %s: the prerun replies were lost (%s)", request.id, exc)
            return
        if isinstance(replies[0], int):
            request.ec_deliveries = replies[0]
        request.ec_routes = replies[-1] if not isinstance(replies[-1], Exception) else None

    def _ending(self, request: Any, event: str, **values: Any) -> CallEvent:
        """The call's closing event: the prerun event's fields, with the outcome and timings."""
        now = time.time()
        self._settle()  # after Celery stored the result: the caller did not wait for this round trip
        prerun: CallEvent = request.ec_prerun
        cpu, peak = getattr(request, "ec_cost", None) or (None, None)
        return dataclasses.replace(prerun, event=event, ts=now, started=prerun.ts, duration=now - request.ec_started,
                                   deliveries=request.ec_deliveries, cpu_seconds=cpu, peak_memory=peak, **values)

    def succeeded(self, task: Any, result: Any) -> None:
        request = task.request
        if getattr(request, "ec_prerun", None) is None:
            return
        encoded = codec.dumps(result)
        done = self._ending(request, POSTRUN, result=encoded if len(encoded) <= RESULT_LIMIT else None)
        # The plugs first: the next call should not wait for this one's event (both are sent
        # before the message is acked, so a crash in between repeats both, loses neither).
        try:
            if _header(request, naming.H_PLUGS) != "off":
                self._forward(done, "RESULT", result, encoded, version=getattr(request, "ec_routes", None))
        finally:
            self.events.emit(done)

    def failed(self, task: Any, exc: BaseException, einfo: Any) -> None:
        request = task.request
        if getattr(request, "ec_prerun", None) is None:
            return
        error = f"{exc.__class__.__name__}: {exc}"
        trace = str(getattr(einfo, "traceback", "") or "")[-4000:]
        done = self._ending(request, FAILURE, error=error, trace=trace)
        try:
            if _header(request, naming.H_PLUGS) != "off":
                self._forward(done, "ERROR", {"error": error, "socket": done.socket, "call": done.call},
                              version=getattr(request, "ec_routes", None))
        finally:
            self.events.emit(done)

    def refuse(self, task: Any, headers: dict, why: str, message: Any = None) -> None:
        """A message whose signature does not hold: set aside with the reason, never run. No result
        and no call event: its call id may be someone else's, which a forger must not overwrite.
        The entry keeps the message as it came (body, headers, queue), so that a call refused only
        because its owner lacked RUN_TASK then can be retried with its signature (`flow dead retry`)."""
        body = getattr(message, "body", None)
        entry = codec.dumps({"call": headers.get("id"), "socket": getattr(task, "socket", None), "refused": why,
                             "sent_as": headers.get(naming.H_USER), "worker": self.worker_name, "at": time.time(),
                             "task": headers.get("task"), "headers": _call_headers(headers),
                             "queue": (getattr(message, "delivery_info", None) or {}).get("routing_key"),
                             "body": body.decode() if isinstance(body, bytes) else body})
        self.redis.lpush(naming.DEAD_LETTER_LIST, entry)
        logger.warning("refused call %s to %s: %s", headers.get("id"), getattr(task, "socket", "?"), why)

    def _dead_letter(self, task, prerun: CallEvent, args, kwargs, deliveries) -> None:
        """A message that killed its worker too often goes aside instead of looping forever."""
        request = task.request
        entry = codec.dumps({"call": prerun.call, "socket": prerun.socket, "args": args, "kwargs": kwargs,
                             "deliveries": deliveries, "at": time.time(), "task": task.name,
                             "queue": (getattr(request, "delivery_info", None) or {}).get("routing_key"),
                             "headers": _call_headers({k: _header(request, k) for k in CALL_HEADERS})})
        self.redis.lpush(naming.DEAD_LETTER_LIST, entry)
        error = f"dead-lettered after {deliveries - 1} deliveries (see the {naming.DEAD_LETTER_LIST} list)"
        self.events.emit(dataclasses.replace(prerun, event=DEAD, ts=time.time(), error=error, deliveries=deliveries))
        task.backend.mark_as_failure(prerun.call, RuntimeError(error), request=task.request)
        raise Ignore()

    # -- plugs ------------------------------------------------------------------------------

    def _forward(self, done: CallEvent, kind: str, value: Any, encoded: str | None = None,
                 version: bytes | None = None) -> None:
        table = self.routes.table(version)  # one table for the source and its targets: no second read
        route = table.get(self.owner, done.socket or "")
        if route is None:
            return
        for plug in route.plugs:
            if plug.type != kind:
                continue
            target = table.get(plug.target_owner, plug.target)
            if target is None:
                continue
            headers = {naming.H_PARENT: done.call, naming.H_TRACKING: done.tracking, naming.H_USER: done.user,
                       naming.H_PLUG: plug.name, naming.H_ARGUMENT: plug.argument}
            if plug.max_queued or plug.max_bytes:
                if encoded is None:
                    encoded = codec.dumps(value)
                self.pressure.wait(plug, target.queue, len(encoded))
            if plug.argument:
                joined = self.joins.arrive(plug.target, done.tracking or done.call, plug.argument,
                                           encoded if encoded is not None else codec.dumps(value),
                                           list(target.join or (plug.argument,)))
                if joined is None:
                    continue  # other arguments still to come
                kwargs = {name: codec.loads(raw) for name, raw in joined.items()}
                headers[naming.H_ARGUMENT] = ",".join(sorted(joined))
                call_id = naming.join_call_id(plug.target, done.tracking or done.call)
                self._record_join(call_id, target, headers, joined)
                self.send(target, (), kwargs, headers, call_id)
            else:
                self.send(target, (value,), {}, headers, str(uuid.uuid4()))

    def _record_join(self, call_id: str, target: Route, headers: dict, joined: dict[str, str]) -> None:
        """A joined call's inputs come from several calls: record them (as their JSON texts, no
        encoding) on a queued event, so the call can be replayed. A plain plug's call needs none:
        its one argument is its parent's recorded result (or error)."""
        size = sum(len(raw) + len(name) + 4 for name, raw in joined.items())
        inputs = ('{"args": [], "kwargs": {' + ", ".join(f"{json.dumps(name)}: {raw}" for name, raw in sorted(joined.items()))
                  + "}}") if size <= RESULT_LIMIT else json.dumps({"omitted": True, "bytes": size, "limit": RESULT_LIMIT})
        self.events.emit(CallEvent.now(call_id, QUEUED, socket=target.socket, processor=target.processor,
                                       tracking=headers.get(naming.H_TRACKING), parent=headers.get(naming.H_PARENT),
                                       argument=headers.get(naming.H_ARGUMENT), user=headers.get(naming.H_USER),
                                       inputs=inputs))

    def send(self, target: Route, args: tuple, kwargs: dict, headers: dict, task_id: str) -> None:
        self.app.send_task(target.task, args=args, kwargs=kwargs, queue=target.queue,
                           task_id=task_id, headers={k: v for k, v in headers.items() if v is not None})


class CommitMismatch(RuntimeError):
    """A replay pinned to a commit reached a worker that runs another one."""


class SocketTask(Task):
    """Base of every socket task: the runtime's hooks around Celery's own result handling."""

    runtime: SocketRuntime
    socket: str
    # A message reaches the pool only once its signature holds (in the worker's main process).
    Strategy = "elasticcode.runtime.signing:verifying_strategy"

    def on_success(self, retval, task_id, args, kwargs):
        self.runtime.succeeded(self, retval)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        self.runtime.failed(self, exc, einfo)


def register_socket_task(app: Celery, runtime: SocketRuntime, socket: str, task_name: str, func: Callable[..., Any]):
    """Register one task. A factory per socket: a closure over a loop variable would make every
    task run the last socket's function (the original system's bug)."""

    def socket_task(self, *args, **kwargs):
        return runtime.run(self, socket, func, args, kwargs)

    return app.task(name=task_name, bind=True, base=SocketTask, acks_late=True, reject_on_worker_lost=True,
                    runtime=runtime, socket=socket)(socket_task)
