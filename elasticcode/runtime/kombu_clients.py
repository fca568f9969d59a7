"""One redis-py client per kombu Redis channel and connection pool, instead of one per command.

kombu's Redis channel builds a new `redis.Redis` for every publish, ack and unacked-index write
(`Channel.conn_or_acquire` -> `_create_client`), and redis-py fills a table of about 170 response
callbacks in each one's constructor: 0.13 ms of CPU per message on this project's 2-core
machine, paid by the client on each call and by the worker's main process twice (profiled with
cProfile during a burst of calls). A `redis.Redis` is safe to share between threads (each command
takes a connection from the pool), so one per pool serves; a channel that drops its pools after a
connection error gets a new client with the new pool.
"""

from __future__ import annotations

from typing import Any


def reuse_sync_clients() -> None:
    """Patch kombu's Redis `Channel._create_client` (idempotent) to keep its synchronous client."""
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._create_client
    if getattr(original, "ec_reused", False):
        return

    def create_client(self: Any, asynchronous: bool = False) -> Any:
        if asynchronous:  # the BRPOP/LISTEN connections kombu registers with its event loop: not shared
            return original(self, asynchronous=True)
        pool = self.pool
        held = self.__dict__.get("_ec_sync_client")
        if held is None or held.connection_pool is not pool:
            held = self.__dict__["_ec_sync_client"] = original(self, asynchronous=False)
        return held

    create_client.ec_reused = True  # type: ignore[attr-defined]
    kombu_redis.Channel._create_client = create_client


__all__ = ["reuse_sync_clients"]
