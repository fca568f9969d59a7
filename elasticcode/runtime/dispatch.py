"""Sending calls from a client: resolve the socket once, publish the message, record it as queued."""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from dataclasses import dataclass

from celery import Celery
from celery.result import AsyncResult
from sqlalchemy import func, select

from ..config import Settings
from ..db import model as m
from ..db.engine import session_scope
from ..errors import NotFound, ServiceUnavailable
from . import naming
from .app import make_app
from .coord import Events, coordination_url, redis_client


@dataclass(frozen=True)
class Target:
    socket: str
    task: str
    queue: str
    processor: str
    processor_status: str
    processor_message: str | None
    socket_message: str | None
    processor_age: float = 0.0  # seconds since the processor row last changed


class WaitingWarning(UserWarning):
    """A call was queued for a processor that is not running (pending, stopped or in error)."""


class Dispatcher:
    """One per client process: a Celery app, a Redis client and a cache of resolved sockets."""

    _instances: dict[tuple, Dispatcher] = {}
    _lock = threading.Lock()

    def __init__(self, settings: Settings):
        self.settings = settings
        self.app: Celery = make_app(settings.require_broker(), settings.backend)
        self.redis = redis_client(coordination_url(settings.broker, settings.backend))
        self.events = Events(self.redis)
        self._targets: dict[str, tuple[float, Target]] = {}
        self._user: str | None = None
        self._warned: set[str] = set()

    @classmethod
    def for_settings(cls, settings: Settings) -> Dispatcher:
        key = (settings.db, settings.broker, settings.backend)
        with cls._lock:
            if key not in cls._instances:
                cls._instances[key] = cls(settings)
            return cls._instances[key]

    def resolve(self, socket: str, max_age: float = 5.0) -> Target:
        """The socket's task and queue, from the model database (cached for a few seconds)."""
        cached = self._targets.get(socket)
        if cached and time.monotonic() - cached[0] < max_age:
            return cached[1]
        try:
            return self._lookup(socket)
        except ServiceUnavailable:
            if cached:  # the database is down: calls keep flowing to the queue we know
                return cached[1]
            raise

    def _lookup(self, socket: str) -> Target:
        with session_scope(self.settings.require_db()) as s:
            row = s.execute(
                select(m.Socket).where(m.Socket.name == socket)
                .order_by((m.Socket.owner == func.current_user()).desc()).limit(1)
            ).scalar()
            if row is None:
                raise NotFound(f"socket {socket!r} does not exist: list them with `flow ls sockets`")
            if self._user is None:
                self._user = s.execute(select(func.current_user())).scalar_one()
            target = Target(socket, naming.task_name(row.name), naming.broker_queue(row.queue.name, row.processor.name),
                            row.processor.name, row.processor.status, row.processor.status_message, row.status_message)
        self._targets[socket] = (time.monotonic(), target)
        return target

    def send(self, socket: str, args: tuple = (), kwargs: dict | None = None, *, tracking: str | None = None,
             parent: str | None = None, call_id: str | None = None) -> AsyncResult:
        target = self.resolve(socket)
        waiting = describe_wait(target)
        if waiting and socket not in self._warned:
            # Once per socket: the call is queued, but the user should know why nothing happens yet.
            self._warned.add(socket)
            warnings.warn(f"{socket}: {waiting}", WaitingWarning, stacklevel=3)
        call_id = call_id or str(uuid.uuid4())
        tracking = tracking or call_id
        headers = {naming.H_TRACKING: tracking, naming.H_USER: self.user}
        if parent:
            headers[naming.H_PARENT] = parent
        self.events.emit(call_id, "queued", socket=socket, processor=target.processor, tracking=tracking,
                         parent=parent, user=self.user)
        return self.app.send_task(target.task, args=list(args), kwargs=kwargs or {}, queue=target.queue,
                                  task_id=call_id, headers=headers)

    @property
    def user(self) -> str | None:
        """The database role calls are made as: recorded calls belong to it (row-level security)."""
        if self._user is None:
            with session_scope(self.settings.require_db()) as s:
                self._user = s.execute(select(func.current_user())).scalar_one()
        return self._user

    def result(self, call_id: str) -> AsyncResult:
        return AsyncResult(call_id, app=self.app)


DEPLOYING_SECONDS = 60  # a processor changed this recently is most likely being deployed


def describe_wait(target: Target) -> str | None:
    """Why a call may wait in its queue, or None when its processor is running (or being deployed)."""
    if target.processor_status == "running" and not target.socket_message:
        return None
    if target.processor_status == "ready":
        if target.processor_age < DEPLOYING_SECONDS:
            return None
        reason = f"processor {target.processor} has not been started by any agent (is one running? `flow up` or `flow agent start`)"
    else:
        reason = target.socket_message or target.processor_message or f"processor {target.processor} is {target.processor_status}"
    return f"{reason}; the call waits in its queue until the processor runs"


__all__ = ["Dispatcher", "Target", "describe_wait"]
