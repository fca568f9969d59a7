"""A processor's Celery worker: `python -m elasticcode.runtime.worker --spec FILE`.

Run by the agent with the processor's own virtual environment's python, with the code checked
out at the pinned commit on sys.path. The spec file (JSON, written by the agent) says which
module, which sockets and which services; a rewritten file with new sockets or a new pool range
is taken without a restart (`ec_refresh`, see `live.py`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from celery.signals import task_received

from . import naming, signing
from .app import is_redis, make_app
from .autoscale import Autoscaler
from .connections import coordination_client, coordination_url, redis_client
from .events import RECEIVED, CallEvent, stream_fields
from .inflight import RestoreAfterReconnect, TakenLog, guard_unacked_append
from .live import LiveConsumer, LiveWorker
from .sockettask import SocketRuntime
from .workerspec import EXIT_BAD_CODE, WorkerSpec

BROKER_HEARTBEAT = 10  # seconds (AMQP heartbeat negotiated with RabbitMQ)


def load_functions(spec: WorkerSpec) -> dict[str, object]:
    sys.path.insert(0, spec.import_path)
    try:
        module = importlib.import_module(spec.module)
    except Exception as exc:  # noqa: BLE001 - reported to the agent as one line
        raise SystemExit(f"module {spec.module!r} failed to import: {exc.__class__.__name__}: {exc}") from None
    functions = {}
    for sock in spec.sockets:
        func = getattr(module, sock.function, None)
        if not callable(func):
            raise SystemExit(f"module {spec.module!r} has no function {sock.function!r} (socket {sock.name!r})")
        functions[sock.name] = func
    return functions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="elasticcode.runtime.worker")
    parser.add_argument("--spec", required=True)
    spec_path = Path(parser.parse_args(argv).spec)
    spec = WorkerSpec.read(spec_path)
    try:
        functions = load_functions(spec)
    except SystemExit as exc:
        print(f"elasticcode-worker-error: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_CODE)

    app = make_app(spec.broker, spec.backend)
    if not is_redis(spec.broker):
        # RabbitMQ requeues what a consumer held once its connection is gone; a node cut off the
        # network is known gone after missed heartbeats: seconds with this, minutes with Celery's 120.
        app.conf.broker_heartbeat = BROKER_HEARTBEAT
    client = coordination_client(spec.broker, spec.backend)
    host = spec.node or naming.node_name()
    worker_name = naming.worker_name(spec.processor, host)
    runtime = SocketRuntime(app, client, spec.processor, spec.owner, worker_name, host, spec.max_deliveries,
                            call_key=spec.call_key, commit=spec.commit)
    if spec.call_key:
        signing.sign_as(spec.owner, spec.call_key)  # the calls its plugs make are its owner's
    live = LiveWorker(app, runtime, spec_path, spec, worker_name, client)  # the sockets follow the spec file
    for sock in spec.sockets:
        live.register(sock, functions[sock.name])

    # The received event; with a Redis broker also the delivery tag of each message taken (logged
    # atomically with kombu's unacked entry), so that the agent (or this process after a lost
    # connection) can put back what it took (RabbitMQ does that itself).
    broker_redis = is_redis(spec.broker)
    taken = TakenLog(client, redis_client(spec.broker) if broker_redis else None, worker_name, os.getpid())
    app.ec_taken = taken

    def received(call: str, task: str, headers: dict) -> CallEvent:
        return CallEvent.now(call, RECEIVED, socket=task, processor=spec.processor,
                             tracking=headers.get(naming.H_TRACKING) or call, parent=headers.get(naming.H_PARENT),
                             user=headers.get(naming.H_USER), worker=worker_name, host=host)

    if broker_redis and coordination_url(spec.broker, spec.backend) == spec.broker:
        # The events' Redis is the broker's (the embedded stack): the received event goes in the
        # MULTI/EXEC that holds the message unacknowledged. A background thread's round trip per
        # message cost this process about 0.55 ms of CPU per call (at a steady 120 calls/s).
        def received_fields(message: Any) -> dict[str, str] | None:
            headers = message.headers or {}
            call, task = headers.get("id"), headers.get("task")
            # Only a call this worker will run: a message refused by its signature records nothing
            # (its call id may be someone else's); the strategy refuses it right after, on this verdict.
            if not call or task not in app.tasks or signing.message_refusal(
                    runtime.owner, runtime.call_key, headers, message) is not None:
                return None
            return stream_fields(received(call, task, headers))

        guard_unacked_append(taken.key, received_fields)
    else:
        if broker_redis:
            guard_unacked_append(taken.key)

        @task_received.connect(weak=False)
        def on_received(request=None, **_):
            # The worker's main process, the moment a message is taken off the queue.
            taken.took(received(request.id, request.task_name, getattr(request, "request_dict", None) or {}))
    if broker_redis:
        app.steps["consumer"].add(RestoreAfterReconnect)

    Autoscaler.cooldown = spec.scale_cooldown
    # Celery's autoscale range: the agent raises the max to the node's share (see Autoscaler, ScaledConsumer).
    low = min(spec.min_concurrency, spec.concurrency)
    top = spec.concurrency if spec.start_concurrency is None else max(low, min(spec.start_concurrency, spec.concurrency))
    worker = app.Worker(
        hostname=worker_name, pool="prefork", concurrency=max(top, 1), queues=spec.queues,
        autoscale=(top, low), autoscaler_cls=Autoscaler, consumer_cls=LiveConsumer,
        loglevel=spec.loglevel, without_gossip=True, without_mingle=True,
    )
    try:
        worker.start()
    finally:
        live.unmark()
    sys.exit(worker.exitcode)


if __name__ == "__main__":
    main()
