"""Change without restarts: a running worker serves the sockets its rewritten spec file names.

The agent rewrites a worker's spec file and sends it `ec_refresh` (a remote-control command, to
its name only). The worker's main process reads the file again and, when the code is still its
own (`WorkerSpec.restart_fingerprint`), registers the new sockets' tasks, rebuilds the consumer's
strategies (Celery's `update_strategies`), consumes the new queues and cancels the ones no socket
uses any more (Celery's `add_task_queue`, `cancel_task_queue`), and sets the pool's range. Three
of Celery's own hooks make that safe with a pool forked before:

- `LiveTasks`, the app's task registry (Celery's `TaskRegistry`): a pool process looks a call's
  task up by name (`fast_trace_task`: `tasks[name]`); one forked before the socket existed finds
  the name missing, reads the spec file and registers the task there and then (`__missing__`).
- `LiveStrategies`, the consumer's strategies: a message for a task the main process does not
  know (sent the moment the socket was added, before the agent rewrote the file) makes it read
  the spec file first.
- `LiveConsumer.on_unknown_task`: a task still unknown is held (unacknowledged, and outside the
  prefetch count, as Celery holds a call with an ETA) and looked up again every HOLD_RETRY seconds
  for HOLD_SECONDS; only then is it rejected as Celery does. A removed socket's leftover
  messages are rejected at once.

Each worker process also says in Redis that it is consuming and what it runs (`naming.ready_key`): the
agent's readiness check in a rolling restart (the old and the new worker share one name, so a
broadcast cannot tell them apart).
"""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path
from typing import Any

from celery import Celery
from celery.app.registry import TaskRegistry
from celery.app.trace import build_tracer
from celery.utils.log import get_logger
from celery.worker.control import control_command, inspect_command

from . import naming
from .autoscale import Autoscaler, ScaledConsumer
from .sockettask import SocketRuntime, register_socket_task
from .workerspec import SocketSpec, WorkerSpec

logger = get_logger(__name__)

REFRESH = "ec_refresh"  # control command: read the spec file again
LIVE = "ec_live"  # inspect command: what this worker process runs now
HOLD_SECONDS = 20.0  # how long a call of a task not (yet) in the spec waits for it (the agent reconciles every 10 s)
HOLD_RETRY = 0.25  # seconds between looks at the spec file meanwhile
READY_TTL = 24 * 3600


class LiveWorker:
    """The sockets one worker process serves, kept as its spec file says: in the main process (all of
    it) and in each pool process (the tasks, when a call first needs one)."""

    def __init__(self, app: Celery, runtime: SocketRuntime, spec_path: Path, spec: WorkerSpec, hostname: str,
                 client=None):
        self.app, self.runtime, self.spec_path, self.hostname, self.client = app, runtime, spec_path, hostname, client
        self.spec, self.code = spec, spec.restart_fingerprint()
        self.served: dict[str, SocketSpec] = {}  # task name -> socket, registered in this process
        self.removed: set[str] = set()  # tasks of sockets removed since: their leftover calls are rejected
        # Before anything reads `app.tasks` (Celery's registry is a constructor argument of the app).
        tasks = app._tasks if isinstance(app._tasks, LiveTasks) else LiveTasks(app._tasks)
        tasks.live, app._tasks = self, tasks
        LiveConsumer.live = self

    # -- any process --------------------------------------------------------------------------------

    def register(self, sock: SocketSpec, func: Any = None) -> Any:
        if func is None:
            func = getattr(importlib.import_module(self.spec.module), sock.function)
        task = register_socket_task(self.app, self.runtime, sock.name, sock.task, func)
        self.served[sock.task] = sock
        self.removed.discard(sock.task)
        return task

    def read(self) -> WorkerSpec | None:
        """The spec file's spec, if its code is what this process runs (otherwise a new worker is
        starting with it: this one serves what it has until it is stopped)."""
        try:
            spec = WorkerSpec.read(self.spec_path)
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("spec file %s unreadable: %s", self.spec_path, exc)
            return None
        return spec if spec.restart_fingerprint() == self.code else None

    def resolve(self, name: str) -> Any:
        """`name`'s task, registered in this process from the spec file; None when the spec lacks it."""
        spec = self.read()
        sock = next((s for s in spec.sockets if s.task == name), None) if spec else None
        if sock is None:
            return None
        task = self.register(sock)
        task.__trace__ = build_tracer(name, task, self.app.loader, self.hostname, app=self.app)
        logger.info("process %d: serving socket %s (added after it started)", os.getpid(), sock.name)
        return task

    def state(self, applied: bool = True) -> dict:
        return {"pid": os.getpid(), "code": self.code, "live": self.spec.live_fingerprint(), "applied": applied,
                "tasks": sorted(self.served), "commit": self.spec.commit}

    # -- the main process ---------------------------------------------------------------------------

    def sync(self, consumer: LiveConsumer, running: bool) -> dict:
        """Serve what the spec file says: tasks, queues (`running`: the consumer consumes now, change
        it; otherwise only the selection it starts from), pool range."""
        spec = self.read()
        if spec is None:
            return self.state(applied=False)
        wanted = {sock.task: sock for sock in spec.sockets}
        for name, sock in wanted.items():
            known = self.served.get(name)
            if known is None:
                self.register(sock)
                logger.info("socket %s: served from now on (queue %s)", sock.name, sock.queue)
            elif known.function != sock.function:  # pool processes keep their tasks: the agent restarts
                logger.warning("socket %s: now function %s; served as %s until the worker restarts",
                               sock.name, sock.function, known.function)
            else:
                self.served[name] = sock
        for name in sorted(set(self.served) - set(wanted)):
            logger.info("socket %s: no longer served", self.served.pop(name).name)
            self.removed.add(name)
            self.app.tasks.pop(name, None)
        self._queues(consumer, set(spec.queues), running)
        self._pool(consumer, spec)
        self.spec = spec
        return self.state()

    def _queues(self, consumer: LiveConsumer, wanted: set[str], running: bool) -> None:
        queues = self.app.amqp.queues
        consuming = set(queues.consume_from)
        for name in sorted(wanted - consuming):
            queues.select_add(queues[name])  # `queues[name]`: declared as Celery declares any missing queue
            if running:
                consumer.call_soon(consumer.add_task_queue, name)
        for name in sorted(consuming - wanted):
            queues.deselect(name)
            if running:
                consumer.call_soon(consumer.cancel_task_queue, name)

    def _pool(self, consumer: LiveConsumer, spec: WorkerSpec) -> None:
        Autoscaler.cooldown = spec.scale_cooldown
        scaler = getattr(consumer.controller, "autoscaler", None)
        if scaler is None:
            return
        low = min(spec.min_concurrency, spec.concurrency)
        if spec.start_concurrency is None:
            top = spec.concurrency
        else:  # the agent steers the maximum (its share of the node): keep it, within the new range
            top = min(max(scaler.max_concurrency, low), spec.concurrency)
        if (top, low) != (scaler.max_concurrency, scaler.min_concurrency):
            scaler.update(max=top, min=low)

    def mark(self, state: dict | None = None) -> None:
        if self.client is None:
            return
        try:
            self.client.set(naming.ready_key(self.hostname, os.getpid()), json.dumps(state or self.state()), ex=READY_TTL)
        except Exception as exc:  # noqa: BLE001 - Redis may be away: the agent then waits for its timeout
            logger.warning("could not record this worker as ready: %s", exc)

    def unmark(self) -> None:
        if self.client is not None:
            try:
                self.client.delete(naming.ready_key(self.hostname, os.getpid()))
            except Exception:  # noqa: BLE001,S110 - it expires anyway
                pass


class LiveTasks(TaskRegistry):
    """Celery's task registry; a task it lacks is looked up in the spec file (a pool process forked
    before the socket was added gets its first call)."""

    live: LiveWorker | None = None

    def __missing__(self, key):
        task = self.live.resolve(key) if self.live is not None else None
        if task is None:
            raise self.NotRegistered(key)
        return task


class LiveStrategies(dict):
    """The consumer's strategies by task name; one it lacks makes it read the spec file first."""

    consumer: LiveConsumer | None = None

    def __missing__(self, key):
        if self.consumer is not None:
            try:
                self.consumer.refresh()
            except Exception:  # noqa: BLE001 - then the task is unknown, as without this
                logger.exception("refresh for task %s failed", key)
            if dict.__contains__(self, key):
                return dict.__getitem__(self, key)
        raise KeyError(key)


def _task_name(message) -> str | None:
    return (getattr(message, "headers", None) or {}).get("task")


class LiveConsumer(ScaledConsumer):
    """The worker's consumer: its strategies and queues follow the spec file (see the module's doc)."""

    Strategies = LiveStrategies
    live: LiveWorker | None = None  # set by LiveWorker

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.strategies.consumer = self
        self._held: dict[int, tuple[float, Any]] = {}  # id(message) -> (since, message): tasks not (yet) in the spec
        self._handler = None

    def update_strategies(self):
        """Celery calls it whenever the consumer (re)starts, before it consumes: the spec file first."""
        self._sync(running=False)

    def refresh(self) -> dict:
        """The spec file again, while consuming (`ec_refresh`, or a message of an unknown task)."""
        return self._sync(running=True)

    def _sync(self, running: bool) -> dict:
        state = self.live.sync(self, running) if self.live is not None else {}
        super().update_strategies()
        for name in [name for name in self.strategies if name not in self.app.tasks]:
            del self.strategies[name]
        if running and state.get("applied"):
            self.live.mark(state)
        return state

    def on_ready(self):
        super().on_ready()
        if self.live is not None:
            self.live.mark()

    def create_task_handler(self, *args, **kwargs):
        self._held.clear()  # a new connection: what the old one held comes back from the broker
        self._handler = super().create_task_handler(*args, **kwargs)
        return self._handler

    def on_unknown_task(self, body, message, exc):
        key, now = id(message), time.monotonic()
        first = self._held.get(key, (None,))[0]
        name = _task_name(message)
        if first is None and body is None and name and self.live is not None and name not in self.live.removed:
            first, self._held[key] = now, (now, message)
            self.qos.increment_eventually()  # as for a call with an ETA: the next message may come meanwhile
            logger.info("a call of %s waits for the socket to be in the spec (up to %.0f s)", name, HOLD_SECONDS)
        if first is not None:
            if now - first < HOLD_SECONDS:
                self.timer.call_after(HOLD_RETRY, self._retry_held, (message, self._handler))
                return None
            self._release(key)
        return super().on_unknown_task(body, message, exc)

    def _retry_held(self, message, handler) -> None:
        if handler is not self._handler or id(message) not in self._held:
            return  # the connection was restarted meanwhile: the broker delivers it again
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - looked up again at the next retry
            logger.exception("refresh failed")
        name = _task_name(message)
        if dict.__contains__(self.strategies, name):
            self._release(id(message))
            handler(message)
        else:
            self.on_unknown_task(None, message, KeyError(name))

    def _release(self, key: int) -> None:
        if self._held.pop(key, None) is not None:
            self.qos.decrement_eventually()

    def stop(self):
        """Warm shutdown: once it consumes no more, the calls it held go back to their queue at once
        (a worker on new code, starting meanwhile, may serve them), not when its connection closes."""
        super().stop()
        held, self._held = list(self._held.values()), {}
        for _, message in held:
            try:
                message.reject(requeue=True)
            except Exception as exc:  # noqa: BLE001 - then the broker puts it back when the connection closes
                logger.warning("could not put back a held call: %s", exc)


@control_command()
def ec_refresh(state_, **_):
    """Read the spec file again: new sockets, queues and pool range, without a restart."""
    consumer = state_.consumer
    if not isinstance(consumer, LiveConsumer) or consumer.live is None:
        return {"error": "this worker does not follow its spec file"}
    return consumer.refresh()


@inspect_command()
def ec_live(state_, **_):
    """What this worker process runs: pid, code and live fingerprints, tasks."""
    live = getattr(state_.consumer, "live", None)
    return live.state() if live is not None else {"error": "this worker does not follow its spec file"}


# -- the agent's side ---------------------------------------------------------------------------------


def refresh(app: Celery, worker: str, pid: int, processes: int = 1, timeout: float = 1.0) -> dict | None:
    """Tell `worker` (every process of that name: `processes`) to read its spec file again; the
    answer of process `pid` (see `LiveWorker.state`), or None when it did not answer."""
    replies = app.control.broadcast(REFRESH, destination=[worker], reply=True, timeout=timeout,
                                    limit=max(processes, 1)) or []
    return next((body for reply in replies for body in reply.values()
                 if isinstance(body, dict) and body.get("pid") == pid), None)


def ready(client, worker: str, pid: int) -> dict | None:
    """What process `pid` of `worker` said once it consumed (its `LiveWorker.state`), or None."""
    raw = client.get(naming.ready_key(worker, pid))
    return json.loads(raw) if raw else None
