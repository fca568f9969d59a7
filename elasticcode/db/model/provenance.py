"""What happened: calls (one execution of a socket), their events, and logs.

Calls are history: they outlive the sockets they ran (socket_id is set NULL on delete, the
socket's name stays in `name`). Indexes cover how calls are queried: by flow run (tracking),
by parent, by socket, by time and by state.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..base import UUID, Base, Owned


class Call(Owned, Base):
    __tablename__ = "call"
    # The call id is the Celery task id, so a message and its record share one key.
    name: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(20), server_default="queued")
    socket_id: Mapped[str | None] = mapped_column(UUID, ForeignKey("socket.id", ondelete="SET NULL"))
    processor: Mapped[str | None] = mapped_column(String(255))
    parent: Mapped[str | None] = mapped_column(UUID)
    tracking: Mapped[str | None] = mapped_column(UUID)
    argument: Mapped[str | None] = mapped_column(String(255))
    worker: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    deliveries: Mapped[int] = mapped_column(Integer, server_default="0")
    received: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict | None] = mapped_column(JSONB)
    inputs: Mapped[dict | None] = mapped_column(JSONB)  # {"args": [...], "kwargs": {...}}, for replay
    replay_of: Mapped[str | None] = mapped_column(UUID)  # the call this one replays
    cpu_seconds: Mapped[float | None] = mapped_column(Float)  # measured in the pool process
    peak_memory: Mapped[int | None] = mapped_column(BigInteger)  # bytes
    commit: Mapped[str | None] = mapped_column(String(64))  # the git commit of the code it ran

    events: Mapped[list[Event]] = relationship(back_populates="call", cascade="all, delete-orphan", order_by="Event.created")

    __table_args__ = (
        Index("ix_call_tracking", "tracking"),
        Index("ix_call_parent", "parent"),
        Index("ix_call_socket_id_created", "socket_id", "created"),
        Index("ix_call_name_created", "name", "created"),  # history(socket=...) filters by name
        Index("ix_call_created", "created"),
        Index("ix_call_state", "state"),
        Index("ix_call_replay_of", "replay_of"),
    )


class Event(Owned, Base):
    """A lifecycle event of a call: received, prerun, postrun, failure, retry."""

    __tablename__ = "event"
    name: Mapped[str] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(Text)
    call_id: Mapped[str] = mapped_column(UUID, ForeignKey("call.id", ondelete="CASCADE"), index=True)
    call: Mapped[Call] = relationship(back_populates="events")


class Log(Owned, Base):
    """A log line attached to any object (oid + discriminator, as in the manual)."""

    __tablename__ = "log"
    oid: Mapped[str | None] = mapped_column(UUID, index=True)
    discriminator: Mapped[str | None] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    public: Mapped[bool] = mapped_column(Boolean, server_default="false")



