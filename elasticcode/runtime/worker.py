"""A processor's Celery worker: `python -m elasticcode.runtime.worker --spec FILE`.

Run by the agent with the processor's own virtual environment's python, with the code checked
out at the pinned commit on sys.path. The spec file (JSON, written by the agent) says which
module, which sockets and which services.
"""

from __future__ import annotations

import argparse
import importlib
import json
import socket as _socket
import sys
from pathlib import Path

from celery.signals import task_received

from . import naming
from .app import make_app
from .coord import BackgroundEvents, coordination_url, redis_client
from .sockettask import SocketRuntime, register_socket_task

EXIT_BAD_CODE = 3


def load_functions(spec: dict) -> dict[str, object]:
    sys.path.insert(0, spec["import_path"])
    try:
        module = importlib.import_module(spec["module"])
    except Exception as exc:  # noqa: BLE001 - reported to the agent as one line
        raise SystemExit(f"module {spec['module']!r} failed to import: {exc.__class__.__name__}: {exc}")
    functions = {}
    for sock in spec["sockets"]:
        func = getattr(module, sock["function"], None)
        if not callable(func):
            raise SystemExit(f"module {spec['module']!r} has no function {sock['function']!r} (socket {sock['name']!r})")
        functions[sock["name"]] = func
    return functions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="elasticcode.runtime.worker")
    parser.add_argument("--spec", required=True)
    spec = json.loads(Path(parser.parse_args(argv).spec).read_text())
    try:
        functions = load_functions(spec)
    except SystemExit as exc:
        print(f"elasticcode-worker-error: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_CODE)

    app = make_app(spec["broker"], spec.get("backend"))
    client = redis_client(coordination_url(spec["broker"], spec.get("backend")))
    host = _socket.gethostname()
    worker_name = f"{spec['processor']}@{host}"
    runtime = SocketRuntime(app, client, spec["processor"], worker_name, spec.get("max_deliveries", 5))
    for sock in spec["sockets"]:
        register_socket_task(app, runtime, sock["name"], sock["task"], functions[sock["name"]])

    events = BackgroundEvents(client)

    @task_received.connect(weak=False)
    def on_received(request=None, **_):
        # Emitted by the worker's main process the moment a message is taken off the queue.
        headers = getattr(request, "request_dict", None) or {}
        events.emit(request.id, "received", socket=request.task_name, processor=spec["processor"],
                    tracking=headers.get(naming.H_TRACKING) or request.id, parent=headers.get(naming.H_PARENT),
                    user=headers.get(naming.H_USER), worker=worker_name, host=host)

    queues = sorted({sock["queue"] for sock in spec["sockets"]})
    worker = app.Worker(
        hostname=worker_name, pool="prefork", concurrency=int(spec.get("concurrency", 1)), queues=queues,
        loglevel=spec.get("loglevel", "INFO"), without_gossip=True, without_mingle=True,
    )
    worker.start()
    sys.exit(worker.exitcode)


if __name__ == "__main__":
    main()
