"""The interval scheduler (`flow scheduler start`): calls sockets that have an interval, on time.

Sockets with `interval=N` (`flow add socket ... -i N`, or `@socket(interval=N)`) get a call
every N seconds with no arguments. One scheduler per network is enough; running two doubles
the calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import select

from ..config import Settings
from ..db import model as m
from ..db.engine import session_scope
from .dispatch import Dispatcher


def due_sockets(settings: Settings) -> dict[str, int]:
    with session_scope(settings.require_db()) as s:
        rows = s.execute(select(m.Socket.name, m.Socket.interval).where(m.Socket.interval.is_not(None),
                                                                       m.Socket.enabled.is_(True)))
        return {name: interval for name, interval in rows if interval and interval > 0}


def run(settings: Settings, stop: threading.Event, say: Callable[[str], None] = print, reload_every: float = 5.0) -> int:
    """Send calls until `stop` is set; returns how many were sent."""
    dispatcher = Dispatcher.for_settings(settings)
    next_due: dict[str, float] = {}
    sockets: dict[str, int] = {}
    loaded, sent = 0.0, 0
    while not stop.is_set():
        now = time.monotonic()
        if now - loaded > reload_every:
            sockets, loaded = due_sockets(settings), now
            next_due = {name: next_due.get(name, now) for name in sockets}
        for name, interval in sockets.items():
            if now >= next_due[name]:
                result = dispatcher.send(name)
                sent += 1
                say(f"{name}: call {result.id}")
                next_due[name] = now + interval
        stop.wait(min([0.5] + [max(0.0, d - time.monotonic()) for d in next_due.values()]))
    return sent
