"""Bearer tokens of the HTTP API (`flow user token`), issued by the model database (migration 0010).

A token is shown once, when issued, and kept nowhere in clear: the database stores its SHA-256,
the API server hashes what a request presents and asks `elasticcode_token_role(hash)` which role
it acts as. Everything here runs on the caller's own session: a user issues, lists and revokes
their own tokens only.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ..errors import ElasticCodeError


def token_hash(token: str) -> str:
    """What the database keeps of a token (hex SHA-256 of its UTF-8 text)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _refusal(exc: DBAPIError) -> ElasticCodeError:
    diag = getattr(exc.orig, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(exc.orig)).strip()
    if "does not exist" in message and "function" in message:
        message = "the model database predates API tokens: upgrade it with `flow db init`"
    return ElasticCodeError(message.splitlines()[0] if message else "the database refused")


def issue(session: Session) -> str:
    """A new token for the connected role, in clear (the only time it is)."""
    try:
        return session.execute(text("SELECT elasticcode_issue_token()")).scalar_one()
    except DBAPIError as exc:
        raise _refusal(exc) from None


def revoke(session: Session, token_id: str | None = None) -> int:
    """Revoke one of the connected role's tokens (by id), or all of them; how many were live."""
    try:
        return session.execute(text("SELECT elasticcode_revoke_tokens(CAST(:id AS uuid))"), {"id": token_id}).scalar_one()
    except DBAPIError as exc:
        if "invalid input syntax for type uuid" in str(exc.orig):
            raise ElasticCodeError(f"token id {token_id!r} is not an id: list yours with `flow user token --list`") from None
        raise _refusal(exc) from None


def listing(session: Session) -> list[dict[str, Any]]:
    """The connected role's tokens: id, created, revoked (never the secret)."""
    try:
        rows = session.execute(text("SELECT CAST(id AS text) AS id, created, revoked FROM elasticcode_tokens()")).mappings()
        return [dict(r) for r in rows]
    except DBAPIError as exc:
        raise _refusal(exc) from None


__all__ = ["issue", "revoke", "listing", "token_hash"]
