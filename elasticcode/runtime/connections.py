"""The Redis that carries coordination (call events, routes, joins, delivery counts).

It is the result backend's Redis, or the broker's when only that one is Redis.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

import redis

from ..errors import ElasticCodeError
from .app import is_redis


def redis_client(url: str) -> redis.Redis:
    """A client for redis://, rediss:// or redis+socket:///path URLs."""
    parts = urlsplit(url)
    if parts.scheme in ("redis+socket", "socket", "unix"):
        query = dict(parse_qsl(parts.query))
        return redis.Redis(unix_socket_path=unquote(parts.path), db=int(query.get("virtual_host", query.get("db", 0)) or 0),
                           password=parts.password, socket_timeout=30, health_check_interval=30)
    return redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5, health_check_interval=30)


def coordination_url(broker: str | None, backend: str | None) -> str:
    for url in (backend, broker):
        if is_redis(url):
            return url  # type: ignore[return-value]
    raise ElasticCodeError(
        "ElasticCode needs a Redis result backend (or a Redis broker) for events and joins: "
        "set --backend redis://host:6379/0 (RabbitMQ can stay the broker)"
    )


def coordination_client(broker: str | None, backend: str | None) -> redis.Redis:
    return redis_client(coordination_url(broker, backend))


class SentAhead:
    """Commands written to Redis now, their replies read later: a round trip that overlaps other
    work (a socket task's function) instead of waiting before it. The connection is held, out of
    the pool, until `replies`; an error reply comes back as its exception, in its place."""

    def __init__(self, client: redis.Redis, commands: list[tuple]):
        self.pool = client.connection_pool
        self.connection = self.pool.get_connection()
        self.count = len(commands)
        try:
            self.connection.send_packed_command(self.connection.pack_commands(commands))
        except BaseException:
            self._release(broken=True)
            raise

    def replies(self) -> list:
        found: list = []
        try:
            for _ in range(self.count):
                try:
                    found.append(self.connection.read_response())
                except redis.ResponseError as exc:
                    found.append(exc)
        except BaseException:
            self._release(broken=True)
            raise
        self._release()
        return found

    def _release(self, broken: bool = False) -> None:
        if broken:  # replies may be left unread on it: never hand it to anyone else as it is
            self.connection.disconnect()
        self.pool.release(self.connection)
