"""Back pressure per plug: a forward waits while the target's queue is over the plug's bounds.

The forward runs in the source's pool process, after the function and before the message is
acked (`SocketRuntime.succeeded`). Waiting there holds that pool process, and with prefetch 1 and
late acks a busy pool process takes no new message: the source stops taking calls exactly as fast
as its forwards block, and starts again as soon as the target drains below the bound. Nothing is
dropped; a crash while waiting redelivers the source's call, which forwards again (at-least-once,
as everywhere else). The other choice, pausing the source's consumer, would have to be decided in
the worker's main process from figures about every plug of every socket the worker consumes, one
decision late (the prefetched and running calls still forward), and would stop the sockets of the
same queue whose plugs are not congested.

Depth is read from the broker: with Redis, LLEN of the queue's lists (kombu keeps one list per
priority step) in one round trip, plus `MEMORY USAGE` when the plug bounds bytes; with RabbitMQ, a
passive queue declare (message count; bytes are estimated as count x the size of the message
being forwarded, AMQP does not report them). While a forward waits it keeps a short-lived key
(`naming.pressure_key`) that `flow ls plugs` shows.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from . import naming
from .app import is_redis
from .routes import PlugRoute

logger = logging.getLogger("elasticcode.worker")

PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport: `queue`, `queue\x06\x163`, ... one list per priority step
PRIORITY_STEPS = (3, 6, 9)
FIRST_PAUSE, LONGEST_PAUSE = 0.005, 0.1  # seconds between two looks at a congested queue
PRESSURE_TTL = 5  # seconds the "waiting" mark outlives the last look
LOG_EVERY = 60.0  # seconds: a forward that keeps waiting says so in the worker's log


class QueueGauge:
    """How many messages (and bytes) wait in a broker queue."""

    def __init__(self, app: Any, broker_url: str | None):
        self.app = app
        self._redis_url = broker_url if is_redis(broker_url) else None
        self._redis = None
        self._pid = -1

    def _client(self):
        if self._redis is None or self._pid != os.getpid():
            from .connections import redis_client

            self._redis, self._pid = redis_client(self._redis_url), os.getpid()
        return self._redis

    def depth(self, queue: str, with_bytes: bool = False, message_size: int = 0) -> tuple[int, int | None]:
        if self._redis_url:
            pipe = self._client().pipeline(transaction=False)
            pipe.llen(queue)
            for step in PRIORITY_STEPS:
                pipe.llen(f"{queue}{PRIORITY_SEP}{step}")
            if with_bytes:
                pipe.memory_usage(queue)
            replies = pipe.execute()
            count = sum(replies[:1 + len(PRIORITY_STEPS)])
            return count, (int(replies[-1] or 0) if with_bytes else None)
        with self.app.connection_for_write() as conn:
            count = conn.default_channel.queue_declare(queue=queue, passive=True).message_count
        return count, (count * message_size if with_bytes else None)


def over(plug: PlugRoute, count: int, size: int | None) -> bool:
    return bool((plug.max_queued and count >= plug.max_queued) or (plug.max_bytes and size is not None and size >= plug.max_bytes))


class BackPressure:
    """Waits before a forward along a bounded plug until the target's queue is below its bounds."""

    def __init__(self, gauge: QueueGauge, coordination: Any, owner: str, worker: str):
        self.gauge, self.redis, self.owner, self.worker = gauge, coordination, owner, worker
        self.waits = 0  # forwards of this process that had to wait (for tests and logs)

    def wait(self, plug: PlugRoute, queue: str, message_size: int) -> float:
        """Return once `queue` is below the plug's bounds; the seconds waited (0.0 when it was)."""
        if not (plug.max_queued or plug.max_bytes):
            return 0.0
        count, size = self.gauge.depth(queue, bool(plug.max_bytes), message_size)
        if not over(plug, count, size):
            return 0.0
        self.waits += 1
        started = last_mark = last_log = time.monotonic()
        pause = FIRST_PAUSE
        self._mark(plug, queue, count, size, started)
        while over(plug, count, size):
            time.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)
            count, size = self.gauge.depth(queue, bool(plug.max_bytes), message_size)
            now = time.monotonic()
            if now - last_mark > 1.0:
                self._mark(plug, queue, count, size, started)
                last_mark = now
            if now - last_log > LOG_EVERY:
                logger.warning("plug %s: forward waiting %.0fs for %s to drain (%d queued)", plug.name, now - started,
                               queue, count)
                last_log = now
        waited = time.monotonic() - started
        try:
            self.redis.delete(naming.pressure_key(self.owner, plug.name))
        except Exception:  # noqa: BLE001,S110 - it expires anyway
            pass
        return waited

    def _mark(self, plug: PlugRoute, queue: str, count: int, size: int | None, started: float) -> None:
        state = {"plug": plug.name, "queue": queue, "queued": count, "bytes": size, "max_queued": plug.max_queued,
                 "max_bytes": plug.max_bytes, "worker": self.worker, "since": time.time() - (time.monotonic() - started)}
        try:
            self.redis.set(naming.pressure_key(self.owner, plug.name), json.dumps(state), ex=PRESSURE_TTL)
        except Exception:  # noqa: BLE001 - the mark is for display only
            logger.debug("could not mark plug %s as back-pressured", plug.name)


__all__ = ["QueueGauge", "BackPressure", "over"]
