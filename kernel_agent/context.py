"""What every step of the agent shares: its settings, connections, identity and workers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import redis

from elasticcode.config import Settings
from elasticcode.runtime import naming
from elasticcode.runtime.connections import coordination_client

from . import nodeinfo
from .supervisor import Workers

# Seconds the server lets the heartbeat's and the recorder's sessions sit idle inside a
# transaction (`elasticcode.db.engine.get_engine`): a node cut off mid-transaction then loses its
# row locks long before it is marked down (failover.MISSED heartbeats), so the live nodes can mark
# it and record its calls. Both transactions take milliseconds.
IDLE_TRANSACTION_TIMEOUT = 3.0


@dataclass
class AgentContext:
    settings: Settings
    home: Path
    db_url: str
    broker: str
    backend: str | None
    redis: redis.Redis
    hostname: str
    cpus: int
    heartbeat: float = 3.0  # seconds between heartbeats (failover.HEARTBEAT)
    stop_timeout: float = 30.0  # seconds running calls get when a worker stops
    stop_event: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)  # set: reconcile on the next turn
    agent_id: str | None = None  # set by registration
    node_id: str | None = None
    workers: Workers = field(init=False)  # processor id -> its worker process, as this agent runs them

    def __post_init__(self) -> None:
        self.workers = Workers(self.stop_timeout)

    @classmethod
    def create(cls, settings: Settings, home: Path, hostname: str | None = None, cpus: int | None = None,
               heartbeat: float = 3.0, stop_timeout: float = 30.0) -> AgentContext:
        """From the settings; fails (ElasticCodeError) without a database, a broker or a coordination Redis."""
        db_url = settings.service_url or settings.require_db()  # never the admin: a non-superuser service role
        broker = settings.require_broker()
        hostname = hostname or naming.node_name()
        cpus = cpus or nodeinfo.cpu_count()
        return cls(settings=settings, home=home, db_url=db_url, broker=broker, backend=settings.backend,
                   redis=coordination_client(broker, settings.backend), hostname=hostname, cpus=cpus,
                   heartbeat=heartbeat, stop_timeout=stop_timeout)
