"""Sending calls from a client: find the socket's route, publish the message, record it as queued.

Routes come from the table the agents publish to Redis (`elasticcode.runtime.routes`), so the
hot path never queries PostgreSQL; a socket the table does not know yet (no agent has published
it) is looked up in the model database once, with the same route builder the agents use.

The `queued` event is signed in the caller's thread and appended to the stream by a background
thread, many calls' events per pipeline, with the routes' version read in the same round trip:
a call waits for no Redis round trip of its own besides the broker's publish (interleaved A/B on
one stack: a sequential call went from 1.53 to 1.33-1.41 times raw Celery's round trip).
A call sent more than VERSION_FRESH seconds after the last such read reads the version itself,
so a route change made by a command (which returns once the agents published it) applies to the
next call; calls in a tight loop use a version at most that old. The thread's events are flushed
when the process exits (also a `multiprocessing` child); only a bare `os._exit` right after
sending can leave a call without its queued event (the worker's events still record it, without
the inputs a replay needs). A server's dispatchers (`as_role`) append it before sending, as
the API server promises a call's events in order.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.util
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from ..catalog.routes import socket_route
from ..config import Settings
from ..db import model as m
from ..db.engine import session_scope
from ..errors import ElasticCodeError, NotFound, ServiceUnavailable
from ..runtime import codec, naming, signing
from ..runtime.app import make_app
from ..runtime.batcher import Batcher
from ..runtime.connections import coordination_client
from ..runtime.events import QUEUED, CallEvent, stream_fields
from ..runtime.routes import PublishedRoutes, Route
from ..security import redact_text

# Arguments bigger than this are refused before anything is sent: a message that size slows the
# broker for everyone and usually means data that belongs in storage, with its address passed.
MAX_PAYLOAD_BYTES = int(os.environ.get("ELASTICCODE_MAX_PAYLOAD", str(8 << 20)))
# A call's arguments are recorded with it (for `flow call replay`) up to this many bytes of JSON;
# a bigger call records only its size, and a replay says why it cannot run. 0 records none.
INPUTS_LIMIT = int(os.environ.get("ELASTICCODE_INPUTS_LIMIT", str(64 << 10)))
VERSION_FRESH = 0.1  # seconds a routes version read by the queued-event thread is used without asking again
FLUSH_AT_EXIT = 10.0  # seconds an exiting client waits for its queued events to reach Redis


class WaitingWarning(UserWarning):
    """A call was queued for a processor that is not running (pending, stopped or in error)."""


class Dispatcher:
    """One per client process and configuration: a Celery app, the Redis of events and routes."""

    _instances: dict[tuple, Dispatcher] = {}
    _lock = threading.Lock()

    def __init__(self, settings: Settings, *, base: Dispatcher | None = None, role: str | None = None,
                 open_session: Callable[[], Any] | None = None, key_ttl: float | None = None):
        """`base`, `role`, `open_session` and `key_ttl` are for a server acting for many users (see
        `as_role`); a client process uses the settings alone."""
        self.settings = settings
        if base is None:
            self.app: Celery = make_app(settings.require_broker(), settings.backend)
            self.redis = coordination_client(settings.broker, settings.backend)
        else:  # one Celery app and one Redis client for every user of a server
            self.app, self.redis = base.app, base.redis
        self.routes = PublishedRoutes(self.redis)
        self._looked_up: dict[str, tuple[float, Route]] = {}  # sockets found in the database, not published
        self._user: str | None = role
        self._open = open_session or (lambda: session_scope(settings.require_db()))
        self._key_ttl = key_ttl  # seconds a call key is trusted before asking again (None: for good)
        self._signed_at: float | None = None  # when this process last got `user`'s key (runtime/signing.py)
        self._warned: set[str] = set()
        self._base = base  # a server's dispatchers record through it (their queued events synchronously)
        self._queued: Batcher[dict[str, str]] | None = None
        self._queued_pid = 0  # the process whose thread `_queued` runs in (a forked child needs its own)
        self._version_seen: tuple[float, bytes | None] = (float("-inf"), None)  # when, and the routes' version

    def as_role(self, role: str, open_session: Callable[[], Any], key_ttl: float | None = 60.0) -> Dispatcher:
        """A dispatcher for `role` sharing this one's Celery app and Redis: its reads (routes, the
        call key) go through `open_session`, a session as that role. For servers that act for many
        users (`flow api`); a key is asked for again after `key_ttl` s (RUN_TASK may be revoked)."""
        return Dispatcher(self.settings, base=self, role=role, open_session=open_session, key_ttl=key_ttl)

    @classmethod
    def for_settings(cls, settings: Settings) -> Dispatcher:
        key = (settings.db, settings.broker, settings.backend)
        with cls._lock:
            if key not in cls._instances:
                cls._instances[key] = cls(settings)
            return cls._instances[key]

    @classmethod
    def forget_all(cls) -> None:
        """Drop every dispatcher: the next call reads the configuration again."""
        with cls._lock:
            cls._instances.clear()

    def resolve(self, socket: str, version: bytes | None = None, max_age: float = 5.0) -> Route:
        """The socket's route: the published one, else the model database's (cached for a few seconds).

        `version` is the routes' version key as just read; without it the table is re-read when
        it is more than half a second old."""
        with reaching_redis():
            route = self.routes.get(self.user, socket, version)
        if route is not None:
            return route
        cached = self._looked_up.get(socket)
        if cached and time.monotonic() - cached[0] < max_age:
            return cached[1]
        try:
            return self._lookup(socket)
        except ServiceUnavailable:
            if cached:  # the database is down: calls keep flowing to the queue we know
                return cached[1]
            raise

    def _lookup(self, socket: str) -> Route:
        with self._open() as s:
            row = s.execute(
                select(m.Socket).options(joinedload(m.Socket.queue), joinedload(m.Socket.processor),
                                         joinedload(m.Socket.task))
                .where(m.Socket.name == socket)
                .order_by((m.Socket.owner == func.current_user()).desc()).limit(1)
            ).scalar()
            if row is None:
                raise NotFound(f"socket {socket!r} does not exist: list them with `flow ls sockets`")
            route = socket_route(row)
        self._looked_up[socket] = (time.monotonic(), route)
        return route

    def send(self, socket: str, args: tuple = (), kwargs: dict | None = None, *, tracking: str | None = None,
             parent: str | None = None, call_id: str | None = None, replay_of: str | None = None,
             commit: str | None = None, plugs: bool = True, **options: Any) -> AsyncResult:
        """Record the call as queued and send it; `options` are Celery's countdown, eta, expires.

        A replay (`client/replay.py`) names the call it replays, may pin the commit the worker must
        run, and may keep the call from flowing on along the socket's plugs."""
        with reaching_redis():
            return self._send(socket, args, kwargs, tracking=tracking, parent=parent, call_id=call_id,
                              replay_of=replay_of, commit=commit, plugs=plugs, **options)

    def _send(self, socket: str, args: tuple, kwargs: dict | None, *, tracking: str | None, parent: str | None,
              call_id: str | None, replay_of: str | None = None, commit: str | None = None, plugs: bool = True,
              **options: Any) -> AsyncResult:
        self.sign_calls()  # first: a user who may not run calls gets the reason before anything is sent
        # A server's dispatcher reads the routes' version with its queued event below: no read here.
        route = self.resolve(socket, self.routes.version if self._base is not None else self._routes_version())
        inputs = recorded_inputs(socket, args, kwargs)
        call_id = call_id or str(uuid.uuid4())
        tracking = tracking or call_id
        queued = stream_fields(CallEvent.now(call_id, QUEUED, socket=socket, processor=route.processor, tracking=tracking,
                                             parent=parent, user=self.user, inputs=inputs, replay_of=replay_of))
        if self._base is not None:
            # A server (`flow api`) sends from worker threads, where this round trip costs little
            # beside HTTP, and its /ws/events show a call's events in order: queued first, here.
            self._base._append_queued([queued])
            route = self.resolve(socket, self._routes_version())
        waiting = describe_wait(route)
        if waiting and socket not in self._warned:
            # Once per socket: the call is queued, but the user should know why nothing happens yet.
            self._warned.add(socket)
            warnings.warn(f"{socket}: call {call_id} is queued: {waiting}", WaitingWarning, stacklevel=3)
        headers = {naming.H_TRACKING: tracking, naming.H_USER: self.user}
        if parent:
            headers[naming.H_PARENT] = parent
        if commit:
            headers[naming.H_COMMIT] = commit
        if not plugs:
            headers[naming.H_PLUGS] = "off"
        sent = self.app.send_task(route.task, args=list(args), kwargs=kwargs or {}, queue=route.queue,
                                  task_id=call_id, headers=headers, **options)
        if self._base is None:
            self._queued_events().put(queued)  # once sent: a call the broker refused is not recorded as queued
        return sent

    def _routes_version(self) -> bytes | None:
        """The routes' version: as the queued-event thread last read it, if that is recent; else read now."""
        if self._base is not None:
            return self._base._routes_version()
        seen_at, version = self._version_seen
        if time.monotonic() - seen_at > VERSION_FRESH:
            version = self.redis.get(naming.ROUTES_VERSION_KEY)
            self._version_seen = (time.monotonic(), version)
        return version

    def _queued_events(self) -> Batcher[dict[str, str]]:
        if self._queued is None or self._queued_pid != os.getpid():
            with Dispatcher._lock:
                if self._queued is None or self._queued_pid != os.getpid():
                    self._queued = Batcher(self._append_queued, "ec-queued-events")
                    self._queued_pid = os.getpid()
                    # Flushed at exit; a `multiprocessing` child runs its finalizers, not atexit.
                    atexit.register(self._queued.wait_flushed, FLUSH_AT_EXIT)
                    multiprocessing.util.Finalize(self._queued, self._queued.wait_flushed, (FLUSH_AT_EXIT,),
                                                  exitpriority=10)
        return self._queued

    def _append_queued(self, batch: list[dict[str, str]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for fields in batch:
            pipe.xadd(naming.EVENTS_STREAM, fields)
        pipe.get(naming.ROUTES_VERSION_KEY)
        version = pipe.execute()[-1]
        self._version_seen = (time.monotonic(), version)

    @property
    def user(self) -> str | None:
        """The database role calls are made as: recorded calls belong to it (row-level security)."""
        if self._user is None:
            with self._open() as s:
                self._user = s.execute(select(func.current_user())).scalar_one()
        return self._user

    def sign_calls(self) -> None:
        """Sign this process's calls and events as `user` (and open its sealed results), with the
        key the database issues to holders of RUN_TASK."""
        if self._signed_at is not None and (self._key_ttl is None or time.monotonic() - self._signed_at < self._key_ttl):
            return
        from sqlalchemy.exc import DBAPIError

        try:
            with self._open() as s:
                key = s.execute(select(func.elasticcode_call_key())).scalar_one()
        except DBAPIError as exc:
            line = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if "does not exist" in line:
                line = "the model database predates signed calls: upgrade it with `flow db init`"
            raise ElasticCodeError(line) from None
        signing.sign_as(self.user, key)
        self._signed_at = time.monotonic()

    def result(self, call_id: str) -> AsyncResult:
        self.sign_calls()  # the key opens the result (sealed for this user: runtime/results.py)
        return AsyncResult(call_id, app=self.app)


@contextlib.contextmanager
def reaching_redis() -> Iterator[None]:
    """Connection errors from the broker or the Redis of routes and events, as one line saying what to check."""
    import redis as redis_py
    from kombu.exceptions import OperationalError

    try:
        yield
    except (redis_py.ConnectionError, redis_py.TimeoutError, OperationalError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceUnavailable(
            f"cannot reach the broker or result backend ({redact_text(detail)}): start them with `flow up`, or "
            "check --broker/--backend (for rediss:// also ssl_ca_certs, readable by the workers too)") from None


RECONNECT_PAUSE = 0.5  # seconds between two tries to reach a result backend that went away


def wait_result(result: AsyncResult, timeout: float | None = None) -> Any:
    """`result.get`, surviving a restart of the result backend: a connection error while waiting
    (Redis restarted under a subscribed client) means ask again on a new connection until the
    timeout, since the result itself is durable there. Other errors are raised as Celery raises them."""
    import redis as redis_py
    from celery.exceptions import TimeoutError as CeleryTimeout
    from kombu.exceptions import OperationalError

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return result.get(timeout=left, disable_sync_subtasks=False)
        except (redis_py.ConnectionError, redis_py.TimeoutError, OperationalError, ConnectionError):
            if deadline is not None and time.monotonic() + RECONNECT_PAUSE >= deadline:
                raise CeleryTimeout(f"the result backend was unreachable until the timeout ({timeout:g}s)") from None
            time.sleep(RECONNECT_PAUSE)


def recorded_inputs(socket: str, args: tuple, kwargs: dict | None) -> str | None:
    """The call's inputs as recorded (JSON text of {"args", "kwargs"}), after the payload check;
    one encoding serves both. Over INPUTS_LIMIT: only the size, so a replay can say why it cannot run."""
    encoded_args, encoded_kwargs = codec.dumps(list(args)), codec.dumps(kwargs or {})
    size = len(encoded_args) + len(encoded_kwargs) + 3
    check_size(socket, size)
    if INPUTS_LIMIT <= 0:
        return None
    if size > INPUTS_LIMIT:
        return f'{{"omitted": true, "bytes": {size}, "limit": {INPUTS_LIMIT}}}'
    return f'{{"args": {encoded_args}, "kwargs": {encoded_kwargs}}}'


def check_payload(socket: str, args: tuple, kwargs: dict | None) -> None:
    check_size(socket, len(codec.dumps([list(args), kwargs or {}])))


def check_size(socket: str, size: int) -> None:
    if size > MAX_PAYLOAD_BYTES:
        raise ElasticCodeError(
            f"the arguments of this call to {socket} are {size / 1e6:.1f} MB, over the {MAX_PAYLOAD_BYTES / 1e6:.1f} MB "
            "limit: pass a path or URL to the data instead (or raise ELASTICCODE_MAX_PAYLOAD)")


DEPLOYING_SECONDS = 60  # a processor changed this recently is most likely being deployed


def describe_wait(route: Route) -> str | None:
    """Why a call may wait in its queue, or None when its processor is running (or being deployed)."""
    if route.processor_status == "running" and not route.socket_message:
        return None
    if route.processor_status == "ready":
        if time.time() - route.changed < DEPLOYING_SECONDS:
            return None
        reason = (f"processor {route.processor} has not been started by any agent "
                  "(is one running? `flow up` or `flow agent start`)")
    else:
        reason = route.socket_message or route.processor_message or f"processor {route.processor} is {route.processor_status}"
    return f"{reason}; the call waits in its queue until the processor runs"


__all__ = ["Dispatcher", "WaitingWarning", "describe_wait"]
