"""Coordination through Redis: call events, the topology cache, argument joins, delivery counts.

Everything here is one Redis round trip or less per call; nothing waits for PostgreSQL. The
Redis is the result backend's (or the broker's, when only it is Redis).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis

from . import naming


def redis_client(url: str) -> redis.Redis:
    """A client for redis://, rediss:// or redis+socket:///path URLs."""
    parts = urlsplit(url)
    if parts.scheme in ("redis+socket", "socket", "unix"):
        query = dict(parse_qsl(parts.query))
        return redis.Redis(unix_socket_path=unquote(parts.path), db=int(query.get("virtual_host", query.get("db", 0)) or 0),
                           password=parts.password, socket_timeout=30, health_check_interval=30)
    return redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5, health_check_interval=30)


def coordination_url(broker: str | None, backend: str | None) -> str:
    from .app import is_redis

    for url in (backend, broker):
        if is_redis(url):
            return url  # type: ignore[return-value]
    from ..errors import ElasticCodeError

    raise ElasticCodeError(
        "ElasticCode needs a Redis result backend (or a Redis broker) for events and joins: "
        "set --backend redis://host:6379/0 (RabbitMQ can stay the broker)"
    )


class Events:
    """Appends call events to the durable stream the agents' recorders drain into PostgreSQL."""

    def __init__(self, client: redis.Redis):
        self.client = client

    @staticmethod
    def record(call_id: str, event: str, **fields: Any) -> dict[str, str]:
        record = {"call": call_id, "event": event, "ts": repr(time.time())}
        for key, value in fields.items():
            if value is not None:
                record[key] = value if isinstance(value, str) else json.dumps(value, default=str)
        return record

    def emit(self, call_id: str, event: str, pipe: Any = None, **fields: Any) -> None:
        (pipe or self.client).xadd(naming.EVENTS_STREAM, self.record(call_id, event, **fields))


class BackgroundEvents:
    """Events appended by a thread, in batches, so the caller never waits for Redis.

    For the worker's main process (the `received` event), whose event loop must keep
    dispatching messages; a later prerun/postrun event of the same call supersedes a lost one.
    """

    def __init__(self, client: redis.Redis, max_batch: int = 500):
        import queue

        self.client, self.max_batch = client, max_batch
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._drain, name="ec-events", daemon=True)
        self.thread.start()

    def emit(self, call_id: str, event: str, **fields: Any) -> None:
        self.queue.put(Events.record(call_id, event, **fields))

    def _drain(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get())
            try:
                pipe = self.client.pipeline(transaction=False)
                for record in batch:
                    pipe.xadd(naming.EVENTS_STREAM, record)
                pipe.execute()
            except redis.RedisError:
                time.sleep(1)  # Redis is away: these received events are superseded by prerun


# Stores one argument of a join and, if that completes the set, claims the join exactly once.
# KEYS[1] join hash; ARGV: ttl, argument, value, required argument names...
JOIN_SCRIPT = """
redis.call('HSET', KEYS[1], 'arg:' .. ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
for i = 4, #ARGV do
  if redis.call('HEXISTS', KEYS[1], 'arg:' .. ARGV[i]) == 0 then return nil end
end
if redis.call('HSETNX', KEYS[1], '__fired__', '1') == 0 then return nil end
local out = {}
for i = 4, #ARGV do
  table.insert(out, ARGV[i])
  table.insert(out, redis.call('HGET', KEYS[1], 'arg:' .. ARGV[i]))
end
return out
"""


class Joins:
    def __init__(self, client: redis.Redis):
        self.script = client.register_script(JOIN_SCRIPT)

    def arrive(self, target: str, tracking: str, argument: str, value_json: str, required: list[str]) -> dict[str, str] | None:
        """Store one argument; return every argument's JSON when this arrival completes the set (once)."""
        out = self.script(
            keys=[naming.join_key(target, tracking)],
            args=[naming.JOIN_TTL_SECONDS, argument, value_json, *sorted(required)],
        )
        if not out:
            return None
        pairs = [item.decode() if isinstance(item, bytes) else item for item in out]
        return dict(zip(pairs[::2], pairs[1::2]))


class TopologyCache:
    """The network's sockets and plugs as the agents published them, re-read when the version moves.

    Socket tasks read the version key in the same pipeline as their prerun event, so a plug
    published before a call starts applies to that call, at no extra round trip.
    """

    def __init__(self, client: redis.Redis, ttl: float = 0.5):
        self.client, self.ttl = client, ttl
        self._version: bytes | None = None
        self._checked = 0.0
        self._sockets: dict[str, Any] = {}
        self._lock = threading.Lock()

    def sockets(self, version: bytes | None = None) -> dict[str, Any]:
        """The topology; `version`, when the caller already read the version key, saves a round trip."""
        now = time.monotonic()
        if version is not None or now - self._checked >= self.ttl:
            with self._lock:
                if version is None:
                    version = self.client.get(naming.TOPOLOGY_VERSION_KEY)
                if version != self._version or not self._sockets:
                    raw = self.client.get(naming.TOPOLOGY_KEY)
                    self._sockets = json.loads(raw)["sockets"] if raw else {}
                    self._version = version
                self._checked = now
        return self._sockets

    def socket(self, name: str, version: bytes | None = None) -> dict[str, Any] | None:
        return self.sockets(version).get(name)


def publish_topology(client: redis.Redis, sockets: dict[str, Any]) -> int:
    """Replace the published topology and move the version (agents call this on every change)."""
    pipe = client.pipeline(transaction=True)
    pipe.set(naming.TOPOLOGY_KEY, json.dumps({"sockets": sockets}))
    pipe.incr(naming.TOPOLOGY_VERSION_KEY)
    return pipe.execute()[1]
