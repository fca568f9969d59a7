"""One Celery task per socket: run the function, record events, forward along plugs.

The hot path per call: one pipelined Redis round trip before the function (delivery count +
prerun event), one after (postrun event), plus one publish per plug. Nothing waits for
PostgreSQL; the agents' recorders write the events there in batches.
"""

from __future__ import annotations

import socket as _socket
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from celery import Celery
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

    def run(self, task: Any, socket: str, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        request = task.request
        call_id = request.id
        tracking = _header(request, naming.H_TRACKING) or call_id
        parent = _header(request, naming.H_PARENT)
        common = {"socket": socket, "processor": self.processor, "tracking": tracking, "parent": parent,
                  "argument": _header(request, naming.H_ARGUMENT), "user": _header(request, naming.H_USER),
                  "worker": self.worker_name, "host": HOST}
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(naming.deliveries_key(call_id))
        pipe.expire(naming.deliveries_key(call_id), naming.DELIVERY_TTL_SECONDS)
        self.events.emit(call_id, "prerun", pipe=pipe, **common)
        deliveries = pipe.execute()[0]
        if deliveries > self.max_deliveries:
            self._dead_letter(task, call_id, socket, args, kwargs, deliveries, common)
        started = time.time()
        try:
            result = func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - recorded, forwarded on ERROR plugs, then re-raised
            error = f"{exc.__class__.__name__}: {exc}"
            self.events.emit(call_id, "failure", error=error, duration=time.time() - started,
                             deliveries=deliveries, trace=traceback.format_exc(limit=20)[-4000:], **common)
            self._forward(socket, "ERROR", {"error": error, "socket": socket, "call": call_id}, call_id, tracking, common["user"])
            raise
        encoded = codec.dumps(result)
        self.events.emit(call_id, "postrun", duration=time.time() - started, deliveries=deliveries,
                         result=encoded if len(encoded) <= 65536 else None, **common)
        self._forward(socket, "RESULT", result, call_id, tracking, common["user"], encoded)
        return result

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
                 encoded: str | None = None) -> None:
        spec = self.topology.socket(socket)
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


def register_socket_task(app: Celery, runtime: SocketRuntime, socket: str, task_name: str, func: Callable[..., Any]):
    """Register one task. A factory per socket: a closure over a loop variable would make every
    task run the last socket's function (the original system's bug)."""

    @app.task(name=task_name, bind=True, acks_late=True, reject_on_worker_lost=True)
    def socket_task(self, *args, **kwargs):
        return runtime.run(self, socket, func, args, kwargs)

    return socket_task
