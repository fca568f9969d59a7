"""Users, roles and privileges. Passwords are not here: they live in PostgreSQL only (SCRAM).

Every ElasticCode user is a PostgreSQL role of the same name; this table adds the email and
the rights (the manual's list) granted directly or through roles.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..base import UUID, Base, Named

RIGHTS = (
    "ALL", "CREATE", "READ", "UPDATE", "DELETE",
    "DB_DROP", "DB_INIT",
    "START_AGENT",
    "RUN_TASK", "CANCEL_TASK",
    "START_PROCESSOR", "STOP_PROCESSOR", "PAUSE_PROCESSOR", "RESUME_PROCESSOR",
    "LOCK_PROCESSOR", "UNLOCK_PROCESSOR",
    "VIEW_PROCESSOR", "VIEW_PROCESSOR_CONFIG", "VIEW_PROCESSOR_CODE",
    "EDIT_PROCESSOR_CONFIG", "EDIT_PROCESSOR_CODE",
    "LS_PROCESSORS", "LS_USERS", "LS_USER", "LS_PLUGS", "LS_SOCKETS", "LS_QUEUES",
    "LS_AGENTS", "LS_NODES", "LS_SCHEDULERS", "LS_WORKERS", "LS_CALLS",
    "ADD_PROCESSOR", "ADD_AGENT", "ADD_NODE", "ADD_PLUG", "ADD_PRIVILEGE", "ADD_QUEUE",
    "ADD_ROLE", "ADD_SCHEDULER", "ADD_SOCKET", "ADD_USER",
    "UPDATE_PROCESSOR", "UPDATE_AGENT", "UPDATE_NODE", "UPDATE_PLUG", "UPDATE_PRIVILEGE",
    "UPDATE_QUEUE", "UPDATE_ROLE", "UPDATE_SCHEDULER", "UPDATE_SOCKET", "UPDATE_USER",
    "DELETE_PROCESSOR", "DELETE_AGENT", "DELETE_NODE", "DELETE_PLUG", "DELETE_PRIVILEGE",
    "DELETE_QUEUE", "DELETE_ROLE", "DELETE_SCHEDULER", "DELETE_SOCKET", "DELETE_USER",
    "READ_PROCESSOR", "READ_AGENT", "READ_NODE", "READ_LOG", "READ_PLUG", "READ_PRIVILEGE",
    "READ_QUEUE", "READ_ROLE", "READ_SCHEDULER", "READ_SOCKET", "READ_USER",
)

user_privileges = Table(
    "user_privileges",
    Base.metadata,
    Column("user_id", UUID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("privilege_id", UUID, ForeignKey("privilege.id", ondelete="CASCADE"), primary_key=True),
)
user_roles = Table(
    "user_roles",
    Base.metadata,
    Column("user_id", UUID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", UUID, ForeignKey("role.id", ondelete="CASCADE"), primary_key=True),
)
role_privileges = Table(
    "role_privileges",
    Base.metadata,
    Column("role_id", UUID, ForeignKey("role.id", ondelete="CASCADE"), primary_key=True),
    Column("privilege_id", UUID, ForeignKey("privilege.id", ondelete="CASCADE"), primary_key=True),
)


class Privilege(Named, Base):
    """A right (its name) that can be granted; the row exists once per right."""

    __tablename__ = "privilege"
    right: Mapped[str] = mapped_column(String(40), unique=True)


class Role(Named, Base):
    __tablename__ = "role"
    privileges: Mapped[list[Privilege]] = relationship(secondary=role_privileges)


class User(Named, Base):
    __tablename__ = "users"
    email: Mapped[str | None] = mapped_column(String(255), unique=True)
    privileges: Mapped[list[Privilege]] = relationship(secondary=user_privileges)
    roles: Mapped[list[Role]] = relationship(secondary=user_roles)
