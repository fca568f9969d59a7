"""Users, roles and privileges. Each user is a PostgreSQL login role of the same name.

Every change here runs on the caller's own session, through SECURITY DEFINER functions of the
model database (migration 0003) that check the caller's rights whoever calls them: creating a
user needs ADD_USER, granting a right needs ADD_PRIVILEGE *and* that right (or ALL). The client
checks first (for the one-line errors); the database is the backstop. A password is sent to the
server only as a SCRAM verifier computed here, so neither the server log nor the model database
ever holds it in clear (the original stored a `clear` column and echoed CREATE USER ... PASSWORD).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ..db import model as m
from ..errors import AlreadyExists, ElasticCodeError, NotFound
from ..security import check_role_name, scram_verifier
from . import rights
from .ops import find

MIN_PASSWORD = 8


def _call(session: Session, function: str, **params: Any) -> str:
    """`SELECT function(params...)` on the caller's session; a refusal becomes one clear line."""
    args = ", ".join(f":{name}" for name in params)
    try:
        return session.execute(text(f"SELECT {function}({args})"), params).scalar_one()
    except DBAPIError as exc:
        diag = getattr(exc.orig, "diag", None)
        message = (getattr(diag, "message_primary", None) or str(exc.orig)).strip()
        raise ElasticCodeError(message.splitlines()[0] if message else f"{function} failed") from None


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ElasticCodeError(f"password is too short: use at least {MIN_PASSWORD} characters")
    return password


def add_user(session: Session, name: str, email: str | None, password: str) -> str:
    """Create the login role (from a SCRAM verifier) and enrol it, as the caller (needs ADD_USER)."""
    rights.require(session, "ADD_USER")
    check_role_name(name)
    check_password(password)
    if session.execute(select(m.User.id).where(m.User.name == name)).first() is not None:
        raise AlreadyExists(f"user {name!r} already exists: choose another name or `flow update user -n {name}`")
    return _call(session, "elasticcode_create_user", name=name, verifier=scram_verifier(password), email=email)


def set_password(session: Session, name: str, password: str) -> str:
    """Change a password (your own, or anyone's with UPDATE_USER); only a verifier is sent."""
    check_role_name(name)
    check_password(password)
    if name != rights.current_role(session):
        rights.require(session, "UPDATE_USER")
    return _call(session, "elasticcode_set_password", name=name, verifier=scram_verifier(password))


def update_user(session: Session, name: str, email: str) -> str:
    rights.require(session, "UPDATE_USER")
    find(session, "user", name)
    return _call(session, "elasticcode_update_user", name=name, email=email)


def delete_user(session: Session, name: str) -> str:
    rights.require(session, "DELETE_USER")
    find(session, "user", name)
    return _call(session, "elasticcode_delete_user", name=name)


def _privilege(session: Session, right: str) -> m.Privilege:
    right = right.upper()
    if right not in m.RIGHTS:
        raise NotFound(f"right {right!r} does not exist: list them with `flow ls privileges`")
    return session.execute(select(m.Privilege).where(m.Privilege.right == right)).scalar_one()


def _holder(session: Session, user: str | None, role: str | None, verb: str) -> tuple[str, bool]:
    if bool(user) == bool(role):
        raise ElasticCodeError(f"give either -u/--user or -r/--role to {verb} the privilege")
    name = user or role or ""
    find(session, "user" if user else "role", name)  # "does not exist" in the CLI's words
    return name, bool(role)


def add_privilege(session: Session, right: str, user: str | None = None, role: str | None = None) -> str:
    """Grant `right` to a user or a role; needs ADD_PRIVILEGE and the right itself (or ALL)."""
    rights.require(session, "ADD_PRIVILEGE")
    privilege = _privilege(session, right)
    name, is_role = _holder(session, user, role, "grant")
    if not rights.is_operator(session):
        caller = rights.current_role(session)
        held = rights.held_rights(session, caller)
        generic = rights.GENERIC.get(privilege.right.split("_", 1)[0])
        if not held & {privilege.right, "ALL", generic}:
            raise ElasticCodeError(f"user {caller!r} cannot grant {privilege.right}: only a holder of that right (or ALL) may grant it")
    return _call(session, "elasticcode_grant", grantee=name, is_role=is_role, right=privilege.right)


def revoke_privilege(session: Session, right: str, user: str | None = None, role: str | None = None) -> str:
    rights.require(session, "DELETE_PRIVILEGE")
    privilege = _privilege(session, right)
    name, is_role = _holder(session, user, role, "revoke")
    return _call(session, "elasticcode_revoke", grantee=name, is_role=is_role, right=privilege.right)


def add_user_to_role(session: Session, user: str, role: str) -> str:
    rights.require(session, "UPDATE_USER")
    find(session, "user", user)
    find(session, "role", role)
    return _call(session, "elasticcode_add_user_to_role", name=user, role_name=role)


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
