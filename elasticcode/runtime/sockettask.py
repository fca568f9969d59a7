"""One Celery task per socket: run the function, record events, forward along plugs.

The hot path per call: one pipelined Redis round trip before the function (delivery count +
prerun event). The postrun event and one publish per plug follow after Celery has stored the
result. Nothing waits for PostgreSQL; the agents' recorders write the events in batches.
"""

from __future__ import annotations

import socket as _socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore

from . import codec, naming
from .coord import Events, Joins, TopologyCache

MAX_DELIVERIES = 5
HOST = _socket.gethostname()


def _header(request: Any, key: str) -> str | None:
    value = getattr(request, key, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(key)
    return value


class SocketRuntime:
    """What the tasks of one worker share: Redis helpers and the topology cache."""

    def __init__(self, app: Celery, redis_client, processor: str, worker_name: str, max_deliveries: int = MAX_DELIVERIES):
        self.app, self.redis = app, redis_client
        self.processor, self.worker_name = processor, worker_name
        self.events, self.joins, self.topology = Events(redis_client), Joins(redis_client), TopologyCache(redis_client)
        self.max_deliveries = max_deliveries

    # -- the call ---------------------------------------------------------------------------
    # Only the prerun pipeline (one Redis round trip) is on the path to the caller's result:
    # the postrun event and the plugs go out from on_success/on_failure, which Celery runs
    # after storing the result and before acking the message, so nothing is lost on a crash.

    def run(self, task: Any, socket: str, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        request = task.request
        call_id = request.id
        tracking = _header(request, naming.H_TRACKING) or call_id
        common = {"socket": socket, "processor": self.processor, "tracking": tracking,
                  "parent": _header(request, naming.H_PARENT), "argument": _header(request, naming.H_ARGUMENT),
                  "user": _header(request, naming.H_USER), "worker": self.worker_name, "host": HOST}
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(naming.deliveries_key(call_id))
        pipe.expire(naming.deliveries_key(call_id), naming.DELIVERY_TTL_SECONDS)
        self.events.emit(call_id, "prerun", pipe=pipe, **common)
        pipe.get(naming.TOPOLOGY_VERSION_KEY)
        replies = pipe.execute()
        deliveries, request.ec_topology = replies[0], replies[-1]
        if deliveries > self.max_deliveries:
            self._dead_letter(task, call_id, socket, args, kwargs, deliveries, common)
        request.ec_common, request.ec_deliveries, request.ec_started = common, deliveries, time.time()
        return func(*args, **kwargs)

    def succeeded(self, task: Any, result: Any) -> None:
        request = task.request
        common = getattr(request, "ec_common", None)
        if common is None:
            return
        encoded = codec.dumps(result)
        self.events.emit(request.id, "postrun", duration=time.time() - request.ec_started,
                         deliveries=request.ec_deliveries, result=encoded if len(encoded) <= 65536 else None, **common)
        self._forward(common["socket"], "RESULT", result, request.id, common["tracking"], common["user"], encoded,
                      version=getattr(request, "ec_topology", None))

    def failed(self, task: Any, exc: BaseException, einfo: Any) -> None:
        request = task.request
        common = getattr(request, "ec_common", None)
        if common is None:
            return
        error = f"{exc.__class__.__name__}: {exc}"
        trace = str(getattr(einfo, "traceback", "") or "")[-4000:]
        self.events.emit(request.id, "failure", error=error, duration=time.time() - request.ec_started,
                         deliveries=request.ec_deliveries, trace=trace, **common)
        self._forward(common["socket"], "ERROR", {"error": error, "socket": common["socket"], "call": request.id},
                      request.id, common["tracking"], common["user"], version=getattr(request, "ec_topology", None))

    def _dead_letter(self, task, call_id, socket, args, kwargs, deliveries, common) -> None:
        """A message that killed its worker too often goes aside instead of looping forever."""
        entry = codec.dumps({"call": call_id, "socket": socket, "args": args, "kwargs": kwargs,
                             "deliveries": deliveries, "at": time.time()})
        self.redis.lpush(naming.DEAD_LETTER_LIST, entry)
        error = f"dead-lettered after {deliveries - 1} deliveries (see the {naming.DEAD_LETTER_LIST} list)"
        self.events.emit(call_id, "dead", error=error, **common)
        task.backend.mark_as_failure(call_id, RuntimeError(error), request=task.request)
        raise Ignore()

    # -- plugs ------------------------------------------------------------------------------

    def _forward(self, socket: str, kind: str, value: Any, call_id: str, tracking: str, user: str | None,
                 encoded: str | None = None, version: bytes | None = None) -> None:
        spec = self.topology.socket(socket, version)
        if not spec:
            return
        for plug in spec.get("plugs", ()):
            if plug["type"] != kind:
                continue
            target = self.topology.socket(plug["target"])
            if target is None:
                continue
            headers = {naming.H_PARENT: call_id, naming.H_TRACKING: tracking, naming.H_USER: user,
                       naming.H_PLUG: plug["name"], naming.H_ARGUMENT: plug.get("argument")}
            argument = plug.get("argument")
            if argument:
                joined = self.joins.arrive(plug["target"], tracking, argument,
                                           encoded if encoded is not None else codec.dumps(value), target.get("join", [argument]))
                if joined is None:
                    continue  # other arguments still to come
                kwargs = {name: codec.loads(raw) for name, raw in joined.items()}
                headers[naming.H_ARGUMENT] = ",".join(sorted(joined))
                self.send(target, (), kwargs, headers, naming.join_call_id(plug["target"], tracking))
            else:
                self.send(target, (value,), {}, headers, str(uuid.uuid4()))

    def send(self, target: dict[str, Any], args: tuple, kwargs: dict, headers: dict, task_id: str) -> None:
        self.app.send_task(target["task"], args=args, kwargs=kwargs, queue=target["queue"],
                           task_id=task_id, headers={k: v for k, v in headers.items() if v is not None})


class SocketTask(Task):
    """Base of every socket task: the runtime's hooks around Celery's own result handling."""

    runtime: SocketRuntime
    socket: str

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
