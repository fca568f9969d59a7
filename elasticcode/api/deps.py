"""What every endpoint gets: the server's context and the request's bearer token."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from .db import Unauthorized, as_role, as_token
from .settings import ApiSettings

bearer = HTTPBearer(auto_error=False, description="A token from `flow user token` (sent as `Authorization: Bearer ...`)")


@dataclass
class ApiContext:
    settings: ApiSettings
    hubs: Any = None  # live.Hubs, once started
    dispatchers: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def as_user(self, token: str) -> Iterator[tuple[str, Session]]:
        with as_token(self.settings.db, token) as pair:
            yield pair

    @contextlib.contextmanager
    def as_role(self, role: str) -> Iterator[Session]:
        with as_role(self.settings.db, role) as session:
            yield session


def context(request: Request) -> ApiContext:
    return request.app.state.api


def token(credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> str:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("no bearer token: send `Authorization: Bearer <token>` (get one with `flow user token`)")
    return credentials.credentials


def header_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header value (WebSockets read headers themselves)."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


Api = Annotated[ApiContext, Depends(context)]
Bearer = Annotated[str, Depends(token)]
PAGE = Query(1, ge=1, le=1_000_000, description="Page number, from 1")
ROWS = Query(100, ge=1, le=1000, description="Rows per page")
