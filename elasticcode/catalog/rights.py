"""Rights checks: before each action, the connected role must hold the right (or ALL).

Superusers and members of elasticcode_service (agents, admins) hold every right. Others must
be ElasticCode users (a `users` row named after their role) with the right granted directly
or through a role. The generic rights CREATE/READ/UPDATE/DELETE cover ADD_/LS_ and READ_/
UPDATE_/DELETE_ rights respectively.

These checks give the one-line errors first; the database enforces the same rules (the SQL
function `elasticcode_has_right` and per-command row-level security policies, migration 0003),
so raw SQL meets them too.
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ..db.model import Privilege, User, role_privileges, user_privileges, user_roles
from ..errors import ElasticCodeError

GENERIC = {"ADD": "CREATE", "LS": "READ", "READ": "READ", "UPDATE": "UPDATE", "DELETE": "DELETE"}
# Nodes and agents are written by agents (elasticcode_service) only: the database refuses users
# whatever rights they hold (migration 0003), so say so before it does.
SERVICE_ONLY = {f"{verb}_{kind}" for verb in ("ADD", "UPDATE", "DELETE") for kind in ("NODE", "AGENT")}


def is_operator(session: Session) -> bool:
    return bool(
        session.execute(
            text(
                "SELECT rolsuper OR pg_has_role(current_user, 'elasticcode_service', 'MEMBER') "
                "FROM pg_roles WHERE rolname = current_user"
            )
        ).scalar()
    )


def current_role(session: Session) -> str:
    return session.execute(text("SELECT current_user")).scalar_one()


def held_rights(session: Session, role: str) -> set[str]:
    user = select(User.id).where(User.name == role).scalar_subquery()
    direct = select(Privilege.right).join(user_privileges).where(user_privileges.c.user_id == user)
    via_roles = (
        select(Privilege.right)
        .join(role_privileges, role_privileges.c.privilege_id == Privilege.id)
        .join(user_roles, user_roles.c.role_id == role_privileges.c.role_id)
        .where(user_roles.c.user_id == user)
    )
    return set(session.execute(direct.union(via_roles)).scalars())


def require(session: Session, right: str) -> None:
    """Raise unless the connected role may perform `right`."""
    if is_operator(session):
        return
    role = current_role(session)
    if right in SERVICE_ONLY:
        raise ElasticCodeError(
            f"{right}: nodes and agents are registered by the agents themselves; only an admin may change them by hand"
        )
    if session.execute(select(User.id).where(User.name == role)).first() is None:
        raise ElasticCodeError(
            f"database role {role!r} is not an ElasticCode user: an admin adds it with `flow add user -n {role}`"
        )
    held = held_rights(session, role)
    generic = GENERIC.get(right.split("_", 1)[0])
    if not held & {right, "ALL", generic}:
        raise ElasticCodeError(
            f"user {role!r} lacks the right {right}: an admin grants it with `flow add privilege -u {role} -n {right}`"
        )


__all__ = ["require", "is_operator", "current_role", "held_rights"]
