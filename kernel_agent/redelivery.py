"""Puts back in their queues the messages a dead worker process took and never acknowledged.

With a Redis broker those messages would otherwise wait in kombu's `unacked` hash for the
visibility timeout (an hour). Each worker process logs the delivery tags it takes
(`elasticcode/runtime/inflight.py`); when the agent sees the process gone, and after its pool
children are gone too (they could still finish the call and ack it), it restores exactly those
tags that kombu still holds (for a whole node marked down: every process of it, `failover.py`),
with kombu's own `restore_by_tag`: atomically removed from the unacked hash and pushed back to
the head of their queue, marked redelivered. RabbitMQ needs none of this: it requeues a dead
consumer's unacknowledged messages when its connection closes.
"""

from __future__ import annotations

import logging
from functools import cache

from celery import Celery

from elasticcode.runtime import inflight, naming
from elasticcode.runtime.app import is_redis, make_app
from elasticcode.runtime.connections import redis_client

log = logging.getLogger("elasticcode.agent")


@cache
def _app(broker: str) -> Celery:
    return make_app(broker)


def restore_node(broker: str, node: str) -> list[str]:
    """Put back every message the worker processes of `node` (marked down) took and never acknowledged."""
    if not is_redis(broker):
        return []
    client = redis_client(broker)
    restored: list[str] = []
    with _app(broker).connection_for_write() as connection:
        qos = connection.default_channel.qos
        for key in client.scan_iter(match=naming.inflight_pattern(node), count=500):
            restored += inflight.restore(client, qos, key.decode())
            client.delete(key)
    return restored


def restore_inflight(broker: str, worker: str, pid: int) -> list[str]:
    """Requeue the messages process `pid` of `worker` held unacknowledged; returns their call ids."""
    if not is_redis(broker):
        return []
    client = redis_client(broker)
    key = naming.inflight_key(worker, pid)
    with _app(broker).connection_for_write() as connection:
        restored = inflight.restore(client, connection.default_channel.qos, key)
    client.delete(key)
    if restored:
        log.warning("%s: its process %s died holding %d call(s); put back in their queues: %s", worker, pid,
                    len(restored), ", ".join(restored))
    return restored
