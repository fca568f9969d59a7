"""The routing contract: where a call to a socket goes and where its result goes next.

One builder (`elasticcode.catalog.routes`) turns the model database into a `RouteTable`; the
agents publish it to Redis; workers (plugs, joins), the client's dispatcher and the notebook
graph read it. Routes are keyed by (owner, socket name): names are unique per owner only, so
two users' sockets of the same name never meet.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from . import naming


@dataclass(frozen=True, slots=True)
class PlugRoute:
    name: str
    type: str  # RESULT or ERROR
    target: str  # socket name
    target_owner: str
    argument: str | None = None  # bound argument of the target (an argument join)
    max_queued: int | None = None  # back pressure: forwards wait while the target's queue holds more messages
    max_bytes: int | None = None  # ... or more bytes (runtime/backpressure.py)


@dataclass(frozen=True, slots=True)
class Route:
    socket: str
    owner: str
    task: str  # Celery task name
    queue: str  # broker queue the processor's workers consume
    processor: str
    function: str
    plugs: tuple[PlugRoute, ...] = ()
    join: tuple[str, ...] = ()  # argument names that must all arrive before the socket fires
    processor_status: str = "ready"
    processor_message: str | None = None
    socket_status: str = "ready"
    socket_message: str | None = None
    changed: float = 0.0  # when the processor row last changed (epoch seconds)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Route:
        # Fields this reader does not know (published by a newer agent) are left out, not an error.
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["plugs"] = tuple(PlugRoute(**{k: v for k, v in plug.items() if k in PlugRoute.__dataclass_fields__})
                                for plug in data.get("plugs", ()))
        values["join"] = tuple(data.get("join", ()))
        return cls(**values)


@dataclass
class RouteTable:
    """Every socket's route, by owner and name."""

    routes: dict[str, dict[str, Route]] = field(default_factory=dict)

    def add(self, route: Route) -> None:
        self.routes.setdefault(route.owner, {})[route.socket] = route

    def get(self, owner: str | None, socket: str) -> Route | None:
        return self.routes.get(owner or "", {}).get(socket)

    def __iter__(self):
        for by_name in self.routes.values():
            yield from by_name.values()

    def __len__(self) -> int:
        return sum(len(by_name) for by_name in self.routes.values())

    def dumps(self) -> str:
        return json.dumps({owner: {name: r.to_json() for name, r in sorted(by_name.items())}
                           for owner, by_name in sorted(self.routes.items())}, sort_keys=True)

    @classmethod
    def loads(cls, raw: str | bytes | None) -> RouteTable:
        table = cls()
        for by_name in (json.loads(raw) if raw else {}).values():
            for data in by_name.values():
                table.add(Route.from_json(data))
        return table


def publish(client: redis.Redis, encoded: str) -> int:
    """Replace the published table (`RouteTable.dumps()`) and move the version."""
    pipe = client.pipeline(transaction=True)
    pipe.set(naming.ROUTES_KEY, encoded)
    pipe.incr(naming.ROUTES_VERSION_KEY)
    return pipe.execute()[1]


def is_published(client: redis.Redis) -> bool:
    return bool(client.exists(naming.ROUTES_KEY))


class PublishedRoutes:
    """The published table as a reader sees it, re-read when the version key moves.

    Socket tasks read the version key in the same pipeline as their prerun event, so a plug
    published before a call starts applies to that call, at no extra round trip; other readers
    check the version at most every `ttl` seconds.
    """

    def __init__(self, client: redis.Redis, ttl: float = 0.5):
        self.client, self.ttl = client, ttl
        self._version: bytes | None = None
        self._checked = self._loaded_at = float("-inf")
        self._table = RouteTable()
        self._loaded = False
        self._lock = threading.Lock()

    def table(self, version: bytes | None = None) -> RouteTable:
        """The table; pass `version` when the caller has just read the version key (no round trip
        then, unless it moved)."""
        now = time.monotonic()
        with self._lock:
            if version is None:
                if now - self._checked < self.ttl:
                    return self._table
                version, self._checked = self.client.get(naming.ROUTES_VERSION_KEY), now
            if version != self._version or (not self._loaded and now - self._loaded_at >= self.ttl):
                raw = self.client.get(naming.ROUTES_KEY)
                self._table, self._loaded = RouteTable.loads(raw), raw is not None
                self._version, self._loaded_at = version, now
            return self._table

    @property
    def version(self) -> bytes | None:
        """The version of the table held now (pass it to `table` to use the held table as it is)."""
        return self._version

    @property
    def published(self) -> bool:
        """Whether any agent has published routes (as of the last read)."""
        return self._loaded

    def get(self, owner: str | None, socket: str, version: bytes | None = None) -> Route | None:
        return self.table(version).get(owner, socket)


__all__ = ["PlugRoute", "Route", "RouteTable", "PublishedRoutes", "publish", "is_published"]
