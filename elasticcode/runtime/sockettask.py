"""One Celery task per socket: run the function, record events, forward along plugs.

The hot path per call: one pipelined Redis round trip before the function (delivery count +
prerun event + the routes' version). One publish per plug, then the postrun event, follow after
Celery has stored the result. Nothing waits for PostgreSQL; the agents' recorders write the
events in batches.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore

from . import codec, naming
from .events import DEAD, FAILURE, POSTRUN, PRERUN, RESULT_LIMIT, CallEvent, EventStream
from .joins import Joins
from .routes import PublishedRoutes, Route
from .workerspec import DEFAULT_MAX_DELIVERIES

logger = logging.getLogger("elasticcode.worker")


def _header(request: Any, key: str) -> str | None:
    value = getattr(request, key, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(key)
    return value


class SocketRuntime:
    """What the tasks of one worker share: the event stream, joins and the published routes."""

    def __init__(self, app: Celery, redis_client, processor: str, owner: str, worker_name: str, host: str,
                 max_deliveries: int = DEFAULT_MAX_DELIVERIES, call_key: str | None = None):
        self.app, self.redis = app, redis_client
        self.processor, self.owner, self.worker_name, self.host = processor, owner, worker_name, host
        self.call_key = call_key  # calls run only if signed with it (runtime/signing.py)
        self.events, self.joins, self.routes = EventStream(redis_client), Joins(redis_client), PublishedRoutes(redis_client)
        self.max_deliveries = max_deliveries

    # -- the call ---------------------------------------------------------------------------
    # Only the prerun pipeline (one Redis round trip) is on the path to the caller's result:
    # the postrun event and the plugs go out from on_success/on_failure, which Celery runs
    # after storing the result and before acking the message, so nothing is lost on a crash.

    def run(self, task: Any, socket: str, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        request = task.request
        call_id = request.id
        prerun = CallEvent.now(call_id, PRERUN, socket=socket, processor=self.processor,
                               tracking=_header(request, naming.H_TRACKING) or call_id,
                               parent=_header(request, naming.H_PARENT), argument=_header(request, naming.H_ARGUMENT),
                               user=_header(request, naming.H_USER), worker=self.worker_name, host=self.host)
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(naming.deliveries_key(call_id))
        pipe.expire(naming.deliveries_key(call_id), naming.DELIVERY_TTL_SECONDS)
        self.events.emit(prerun, pipe=pipe)
        pipe.get(naming.ROUTES_VERSION_KEY)
        replies = pipe.execute()
        deliveries, request.ec_routes = replies[0], replies[-1]
        if deliveries > self.max_deliveries:
            self._dead_letter(task, prerun, args, kwargs, deliveries)
        request.ec_prerun, request.ec_deliveries, request.ec_started = prerun, deliveries, time.time()
        return func(*args, **kwargs)

    def _ending(self, request: Any, event: str, **values: Any) -> CallEvent:
        """The call's closing event: the prerun event's fields, with the outcome and timings."""
        prerun: CallEvent = request.ec_prerun
        now = time.time()
        return dataclasses.replace(prerun, event=event, ts=now, duration=now - request.ec_started,
                                   deliveries=request.ec_deliveries, **values)

    def succeeded(self, task: Any, result: Any) -> None:
        request = task.request
        if getattr(request, "ec_prerun", None) is None:
            return
        encoded = codec.dumps(result)
        done = self._ending(request, POSTRUN, result=encoded if len(encoded) <= RESULT_LIMIT else None)
        # The plugs first: the next call should not wait for this one's event (both are sent
        # before the message is acked, so a crash in between repeats both, loses neither).
        try:
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
            self._forward(done, "ERROR", {"error": error, "socket": done.socket, "call": done.call},
                          version=getattr(request, "ec_routes", None))
        finally:
            self.events.emit(done)

    def refuse(self, task: Any, headers: dict, why: str) -> None:
        """A message whose signature does not hold: set aside with the reason, never run. No result
        and no call event: its call id may be someone else's, which a forger must not overwrite."""
        entry = codec.dumps({"call": headers.get("id"), "socket": getattr(task, "socket", None), "refused": why,
                             "sent_as": headers.get(naming.H_USER), "worker": self.worker_name, "at": time.time()})
        self.redis.lpush(naming.DEAD_LETTER_LIST, entry)
        logger.warning("refused call %s to %s: %s", headers.get("id"), getattr(task, "socket", "?"), why)

    def _dead_letter(self, task, prerun: CallEvent, args, kwargs, deliveries) -> None:
        """A message that killed its worker too often goes aside instead of looping forever."""
        entry = codec.dumps({"call": prerun.call, "socket": prerun.socket, "args": args, "kwargs": kwargs,
                             "deliveries": deliveries, "at": time.time()})
        self.redis.lpush(naming.DEAD_LETTER_LIST, entry)
        error = f"dead-lettered after {deliveries - 1} deliveries (see the {naming.DEAD_LETTER_LIST} list)"
        self.events.emit(dataclasses.replace(prerun, event=DEAD, ts=time.time(), error=error, deliveries=deliveries))
        task.backend.mark_as_failure(prerun.call, RuntimeError(error), request=task.request)
        raise Ignore()

    # -- plugs ------------------------------------------------------------------------------

    def _forward(self, done: CallEvent, kind: str, value: Any, encoded: str | None = None,
                 version: bytes | None = None) -> None:
        route = self.routes.get(self.owner, done.socket or "", version)
        if route is None:
            return
        for plug in route.plugs:
            if plug.type != kind:
                continue
            target = self.routes.get(plug.target_owner, plug.target)
            if target is None:
                continue
            headers = {naming.H_PARENT: done.call, naming.H_TRACKING: done.tracking, naming.H_USER: done.user,
                       naming.H_PLUG: plug.name, naming.H_ARGUMENT: plug.argument}
            if plug.argument:
                joined = self.joins.arrive(plug.target, done.tracking or done.call, plug.argument,
                                           encoded if encoded is not None else codec.dumps(value),
                                           list(target.join or (plug.argument,)))
                if joined is None:
                    continue  # other arguments still to come
                kwargs = {name: codec.loads(raw) for name, raw in joined.items()}
                headers[naming.H_ARGUMENT] = ",".join(sorted(joined))
                self.send(target, (), kwargs, headers, naming.join_call_id(plug.target, done.tracking or done.call))
            else:
                self.send(target, (value,), {}, headers, str(uuid.uuid4()))

    def send(self, target: Route, args: tuple, kwargs: dict, headers: dict, task_id: str) -> None:
        self.app.send_task(target.task, args=args, kwargs=kwargs, queue=target.queue,
                           task_id=task_id, headers={k: v for k, v in headers.items() if v is not None})


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
