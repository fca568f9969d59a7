"""Declarative base and the columns every owned object shares."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, MetaData, String, Uuid, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

# Deterministic constraint names keep alembic migrations stable across machines.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LENGTH = 200
# ids are native uuid columns, handled as strings in Python (they travel in JSON headers).
UUID = Uuid(as_uuid=False)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def id_column() -> Mapped[str]:
    # Python-side uuid4 for ORM inserts; gen_random_uuid() (core since PostgreSQL 13, no
    # extension needed) for rows written by plain SQL.
    return mapped_column(
        UUID, primary_key=True, default=new_id, server_default=text("gen_random_uuid()")
    )


class Owned:
    """Columns of every row that belongs to a user: row-level security keys on `owner`."""

    id: Mapped[str] = id_column()
    owner: Mapped[str] = mapped_column(String(63), server_default=text("current_user"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    lastupdated: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Named(Owned):
    """An owned object users refer to by name: names are unique per owner."""

    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    status: Mapped[str] = mapped_column(String(20), server_default="ready")
    requested_status: Mapped[str] = mapped_column(String(20), server_default="ready")
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    description: Mapped[str | None] = mapped_column(String(2000))

    @declared_attr.directive
    def __table_args__(cls):  # noqa: N805
        from sqlalchemy import UniqueConstraint

        return (UniqueConstraint("owner", "name"),)
