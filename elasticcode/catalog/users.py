"""Users, roles and privileges. Each user is a PostgreSQL login role of the same name.

Creating a role needs the admin connection (CREATEROLE). The password is sent to the server
only as a SCRAM verifier computed here, so neither the server log nor the model database ever
holds it in clear (the original stored a `clear` column and echoed CREATE USER ... PASSWORD).
"""

from __future__ import annotations

from psycopg2 import sql
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from ..db import model as m
from ..db.schema import enrol_on
from ..errors import AlreadyExists, ElasticCodeError, NotFound
from ..security import check_role_name, scram_verifier
from . import rights
from .ops import find


def _raw(session: Session):
    return session.connection().connection.dbapi_connection


def add_user(session: Session, name: str, email: str | None, password: str) -> None:
    """Create the login role and enrol it; `session` must be on the admin connection."""
    rights.require(session, "ADD_USER")
    check_role_name(name)
    if len(password) < 8:
        raise ElasticCodeError("password is too short: use at least 8 characters")
    if session.execute(select(m.User.id).where(m.User.name == name)).first() is not None:
        raise AlreadyExists(f"user {name!r} already exists: choose another name or `flow update user -n {name}`")
    with _raw(session).cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        statement = "ALTER ROLE {} LOGIN PASSWORD {}" if cur.fetchone() else "CREATE ROLE {} LOGIN PASSWORD {}"
        cur.execute(sql.SQL(statement).format(sql.Identifier(name), sql.Literal(scram_verifier(password))))
    enrol_on(session.connection(), name, email, rights=())


def delete_user(session: Session, name: str) -> None:
    rights.require(session, "DELETE_USER")
    user = find(session, "user", name)
    session.delete(user)
    session.flush()
    with _raw(session).cursor() as cur:
        cur.execute(sql.SQL("REVOKE elasticcode_user FROM {}").format(sql.Identifier(name)))
        cur.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(name)))


def add_role(session: Session, name: str, description: str | None = None) -> m.Role:
    rights.require(session, "ADD_ROLE")
    if session.execute(select(m.Role.id).where(m.Role.name == name)).first() is not None:
        raise AlreadyExists(f"role {name!r} already exists: choose another name")
    role = m.Role(name=name, description=description)
    session.add(role)
    session.flush()
    return role


def _privilege(session: Session, right: str) -> m.Privilege:
    right = right.upper()
    if right not in m.RIGHTS:
        raise NotFound(f"right {right!r} does not exist: list them with `flow ls privileges`")
    return session.execute(select(m.Privilege).where(m.Privilege.right == right)).scalar_one()


def add_privilege(session: Session, right: str, user: str | None = None, role: str | None = None) -> str:
    """Grant `right` to a user or a role; returns what was done, for the CLI to print."""
    rights.require(session, "ADD_PRIVILEGE")
    if bool(user) == bool(role):
        raise ElasticCodeError("give either -u/--user or -r/--role to grant the privilege to")
    privilege = _privilege(session, right)
    if user:
        holder = find(session, "user", user)
        table, column = m.user_privileges, m.user_privileges.c.user_id
    else:
        holder = find(session, "role", role)
        table, column = m.role_privileges, m.role_privileges.c.role_id
    exists = session.execute(
        select(table).where(column == holder.id, table.c.privilege_id == privilege.id)
    ).first()
    if not exists:
        session.execute(insert(table).values({column.key: holder.id, "privilege_id": privilege.id}))
    return f"privilege {privilege.right} granted to {'user' if user else 'role'} {holder.name}"


def revoke_privilege(session: Session, right: str, user: str | None = None, role: str | None = None) -> str:
    rights.require(session, "DELETE_PRIVILEGE")
    if bool(user) == bool(role):
        raise ElasticCodeError("give either -u/--user or -r/--role to revoke the privilege from")
    privilege = _privilege(session, right)
    if user:
        holder, table, column = find(session, "user", user), m.user_privileges, m.user_privileges.c.user_id
    else:
        holder, table, column = find(session, "role", role), m.role_privileges, m.role_privileges.c.role_id
    session.execute(delete(table).where(column == holder.id, table.c.privilege_id == privilege.id))
    return f"privilege {privilege.right} revoked from {holder.name}"


def add_user_to_role(session: Session, user: str, role: str) -> str:
    rights.require(session, "UPDATE_USER")
    holder, group = find(session, "user", user), find(session, "role", role)
    present = session.execute(
        select(m.user_roles).where(m.user_roles.c.user_id == holder.id, m.user_roles.c.role_id == group.id)
    ).first()
    if not present:
        session.execute(insert(m.user_roles).values(user_id=holder.id, role_id=group.id))
    return f"user {holder.name} is in role {group.name}"


def describe_user(session: Session, name: str) -> dict:
    rights.require(session, "LS_USER")
    user = find(session, "user", name)
    return {
        "name": user.name,
        "id": user.id,
        "email": user.email,
        "roles": [r.name for r in user.roles],
        "privileges": sorted(rights.held_rights(session, user.name)),
    }
