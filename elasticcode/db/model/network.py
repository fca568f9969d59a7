"""The network: where code runs (nodes, agents, workers) and what it is (processors, sockets, plugs).

Follows the manual's ORM listing (12.3) with its faults fixed: real foreign keys instead of
association tables for one-to-one links, uuid ids without extensions, names unique per owner.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..base import UUID, Base, Named

PLUG_TYPES = ("RESULT", "ERROR")
QUEUE_TYPES = ("direct", "topic", "fanout")
STRATEGIES = ("BALANCED", "EFFICIENT")
SCHEDULE_TYPES = ("CRON", "INTERVAL")


class Scheduler(Named, Base):
    __tablename__ = "scheduler"
    strategy: Mapped[str] = mapped_column(String(20), server_default="BALANCED")
    __table_args__ = (
        UniqueConstraint("owner", "name"),
        CheckConstraint(f"strategy IN {STRATEGIES}", name="strategy"),
    )
    nodes: Mapped[list[Node]] = relationship(back_populates="scheduler")


class Node(Named, Base):
    """A machine. Its agent keeps the figures current with heartbeats."""

    __tablename__ = "node"
    hostname: Mapped[str] = mapped_column(String(255), index=True)
    cpus: Mapped[int] = mapped_column(Integer, server_default="0")
    memsize: Mapped[int | None] = mapped_column(BigInteger)
    freemem: Mapped[int | None] = mapped_column(BigInteger)
    disksize: Mapped[int | None] = mapped_column(BigInteger)
    diskfree: Mapped[int | None] = mapped_column(BigInteger)
    cpuload: Mapped[float | None] = mapped_column(Float)
    scheduler_id: Mapped[str | None] = mapped_column(UUID, ForeignKey("scheduler.id", ondelete="SET NULL"))
    scheduler: Mapped[Scheduler | None] = relationship(back_populates="nodes")
    agent: Mapped[Agent | None] = relationship(back_populates="node", cascade="all, delete-orphan", uselist=False)


class Agent(Named, Base):
    """The daemon of one node (kernel_agent)."""

    __tablename__ = "agent"
    hostname: Mapped[str] = mapped_column(String(255))
    cpus: Mapped[int] = mapped_column(Integer, server_default="0")
    port: Mapped[int | None] = mapped_column(Integer)
    pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    node_id: Mapped[str] = mapped_column(UUID, ForeignKey("node.id", ondelete="CASCADE"), unique=True)
    node: Mapped[Node] = relationship(back_populates="agent")
    # passive_deletes: the database's ON DELETE CASCADE removes worker rows, which users may not write.
    workers: Mapped[list[Worker]] = relationship(back_populates="agent", cascade="all, delete-orphan", passive_deletes=True)


class Flow(Named, Base):
    """A named group of processors (a notebook's dataflow, say)."""

    __tablename__ = "flow"
    file_id: Mapped[str | None] = mapped_column(UUID, ForeignKey("file.id", ondelete="SET NULL"))
    processors: Mapped[list[Processor]] = relationship(back_populates="flow")


class Processor(Named, Base):
    """A Python module at a git repository and commit, run with `concurrency` worker processes."""

    __tablename__ = "processor"
    module: Mapped[str] = mapped_column(String(255))
    gitrepo: Mapped[str] = mapped_column(String(1000))
    branch: Mapped[str | None] = mapped_column(String(255))
    commit: Mapped[str | None] = mapped_column(String(64))
    gittag: Mapped[str | None] = mapped_column(String(255))
    modulepath: Mapped[str | None] = mapped_column(String(1000))
    requirements: Mapped[str | None] = mapped_column(Text)
    hostname: Mapped[str | None] = mapped_column(String(255))
    concurrency: Mapped[int] = mapped_column(Integer, server_default="1")  # most pool processes per node
    # Fewest pool processes per node, kept even when idle (0: none until a call comes; see the agent's scaling).
    min_concurrency: Mapped[int] = mapped_column(Integer, server_default="0")
    retries: Mapped[int | None] = mapped_column(Integer)
    timelimit: Mapped[int | None] = mapped_column(Integer)
    ratelimit: Mapped[str | None] = mapped_column(String(20))
    beat: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    endpoint: Mapped[str | None] = mapped_column(String(255))
    hasapi: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # Why the processor is pending or failed, in one line (shown by `flow ls processors`).
    status_message: Mapped[str | None] = mapped_column(Text)
    flow_id: Mapped[str | None] = mapped_column(UUID, ForeignKey("flow.id", ondelete="SET NULL"))
    __table_args__ = (
        UniqueConstraint("owner", "name"),
        CheckConstraint("concurrency >= 1", name="concurrency_positive"),
        CheckConstraint("min_concurrency >= 0 AND min_concurrency <= concurrency", name="min_concurrency_range"),
    )

    flow: Mapped[Flow | None] = relationship(back_populates="processors")
    sockets: Mapped[list[Socket]] = relationship(back_populates="processor", cascade="all, delete-orphan")
    deployments: Mapped[list[Deployment]] = relationship(back_populates="processor", cascade="all, delete-orphan")
    workers: Mapped[list[Worker]] = relationship(back_populates="processor", cascade="all, delete-orphan",
                                                 passive_deletes=True)


class Deployment(Named, Base):
    """A processor placed on one host with a number of CPUs."""

    __tablename__ = "deployment"
    hostname: Mapped[str] = mapped_column(String(255))
    cpus: Mapped[int] = mapped_column(Integer, server_default="1")
    processor_id: Mapped[str] = mapped_column(UUID, ForeignKey("processor.id", ondelete="CASCADE"), index=True)
    processor: Mapped[Processor] = relationship(back_populates="deployments")


class Worker(Named, Base):
    """The running Celery worker of one processor on one node."""

    __tablename__ = "worker"
    backend: Mapped[str | None] = mapped_column(String(1000))
    broker: Mapped[str | None] = mapped_column(String(1000))
    concurrency: Mapped[int] = mapped_column(Integer, server_default="1")
    process: Mapped[int | None] = mapped_column(Integer)
    hostname: Mapped[str | None] = mapped_column(String(255))
    workerdir: Mapped[str | None] = mapped_column(String(1000))
    commit: Mapped[str | None] = mapped_column(String(64))
    processor_id: Mapped[str] = mapped_column(UUID, ForeignKey("processor.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[str | None] = mapped_column(UUID, ForeignKey("agent.id", ondelete="CASCADE"), index=True)
    deployment_id: Mapped[str | None] = mapped_column(UUID, ForeignKey("deployment.id", ondelete="SET NULL"))
    processor: Mapped[Processor] = relationship(back_populates="workers")
    agent: Mapped[Agent | None] = relationship(back_populates="workers")


class Queue(Named, Base):
    """A durable broker queue in front of sockets. Defaults favour never losing a message."""

    __tablename__ = "queue"
    qtype: Mapped[str] = mapped_column(String(20), server_default="direct")
    durable: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    reliable: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    auto_delete: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    max_length: Mapped[int | None] = mapped_column(Integer)
    max_length_bytes: Mapped[int | None] = mapped_column(BigInteger)
    message_ttl: Mapped[int | None] = mapped_column(Integer)
    expires: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (
        UniqueConstraint("owner", "name"),
        CheckConstraint(f"qtype IN {QUEUE_TYPES}", name="qtype"),
    )


class Task(Named, Base):
    """One function of a processor's module (the code a socket runs)."""

    __tablename__ = "task"
    module: Mapped[str] = mapped_column(String(255))
    function: Mapped[str] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(Text)
    processor_id: Mapped[str | None] = mapped_column(UUID, ForeignKey("processor.id", ondelete="CASCADE"), index=True)
    arguments: Mapped[list[Argument]] = relationship(back_populates="task", cascade="all, delete-orphan")


class Argument(Named, Base):
    """A named parameter of a task; plugs may bind to one."""

    __tablename__ = "argument"
    position: Mapped[int] = mapped_column(Integer, server_default="0")
    kind: Mapped[str | None] = mapped_column(String(30))
    task_id: Mapped[str] = mapped_column(UUID, ForeignKey("task.id", ondelete="CASCADE"), index=True)
    task: Mapped[Task] = relationship(back_populates="arguments")
    __table_args__ = (UniqueConstraint("task_id", "name"),)


class Socket(Named, Base):
    """A function of a processor fronted by a durable queue."""

    __tablename__ = "socket"
    processor_id: Mapped[str] = mapped_column(UUID, ForeignKey("processor.id", ondelete="CASCADE"), index=True)
    queue_id: Mapped[str] = mapped_column(UUID, ForeignKey("queue.id"), index=True)
    task_id: Mapped[str] = mapped_column(UUID, ForeignKey("task.id"), index=True)
    schedule_type: Mapped[str | None] = mapped_column(String(20))
    scheduled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    cron: Mapped[str | None] = mapped_column(String(100))
    interval: Mapped[int | None] = mapped_column(Integer)
    status_message: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        UniqueConstraint("owner", "name"),
        CheckConstraint(f"schedule_type IS NULL OR schedule_type IN {SCHEDULE_TYPES}", name="schedule_type"),
    )

    processor: Mapped[Processor] = relationship(back_populates="sockets")
    queue: Mapped[Queue] = relationship()
    task: Mapped[Task] = relationship()
    sourceplugs: Mapped[list[Plug]] = relationship(
        back_populates="source", foreign_keys="Plug.source_id", cascade="all, delete-orphan"
    )
    targetplugs: Mapped[list[Plug]] = relationship(
        back_populates="target", foreign_keys="Plug.target_id", cascade="all, delete-orphan"
    )


class Plug(Named, Base):
    """An edge: the source socket's result (or error) goes to the target socket.

    `argument` binds the value to one named parameter of the target; a target with several
    bound plugs fires once every bound argument has arrived for the same flow run.
    """

    __tablename__ = "plug"
    type: Mapped[str] = mapped_column(String(10), server_default="RESULT")
    source_id: Mapped[str] = mapped_column(UUID, ForeignKey("socket.id", ondelete="CASCADE"), index=True)
    target_id: Mapped[str] = mapped_column(UUID, ForeignKey("socket.id", ondelete="CASCADE"), index=True)
    queue_id: Mapped[str | None] = mapped_column(UUID, ForeignKey("queue.id", ondelete="SET NULL"))
    argument: Mapped[str | None] = mapped_column(String(255))
    status_message: Mapped[str | None] = mapped_column(Text)  # why an agent marked it `error`
    # Back pressure: the source waits while the target's queue holds more (NULL: no bound).
    max_queued: Mapped[int | None] = mapped_column(Integer)
    max_bytes: Mapped[int | None] = mapped_column(BigInteger)
    __table_args__ = (
        UniqueConstraint("owner", "name"),
        CheckConstraint(f"type IN {PLUG_TYPES}", name="type"),
        CheckConstraint("source_id <> target_id", name="no_self_loop"),
        CheckConstraint("(max_queued IS NULL OR max_queued > 0) AND (max_bytes IS NULL OR max_bytes > 0)", name="bounds"),
    )

    source: Mapped[Socket] = relationship(back_populates="sourceplugs", foreign_keys=[source_id])
    target: Mapped[Socket] = relationship(back_populates="targetplugs", foreign_keys=[target_id])
    queue: Mapped[Queue | None] = relationship()
