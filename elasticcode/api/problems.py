"""Errors as RFC 9457 problem details (`application/problem+json`), with the CLI's one-line message.

`detail` is exactly the line `flow` prints after `Error:`; `status` follows the kind of error:
401 no or bad token, 403 a missing right, 404 an unknown object, 409 a name taken, 400/422 bad
input, 503 a service down, 504 a call without a result in time.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AlreadyExists, ElasticCodeError, NotFound, ServiceUnavailable
from ..security import redact_text
from .db import Unauthorized

log = logging.getLogger("elasticcode.api")
MEDIA_TYPE = "application/problem+json"
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          406: "Not acceptable", 409: "Conflict", 413: "Request too large", 422: "Invalid request", 500: "Internal error",
          503: "Service unavailable", 504: "No result in time"}


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    call: str | None = None  # the call id, when the problem is about one call


class BodyTooLarge(ElasticCodeError):
    status = 413


class CallTimeout(ElasticCodeError):
    def __init__(self, message: str, call: str):
        super().__init__(message)
        self.call = call


def one_line(message: str) -> str:
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in message.strip().replace("\n", " "))


def problem(status: int, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": one_line(detail)}
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": 'Bearer realm="elasticcode"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def status_of(exc: ElasticCodeError) -> int:
    message = str(exc)
    if isinstance(getattr(exc, "status", None), int):
        return exc.status
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, AlreadyExists):
        return 409
    if isinstance(exc, ServiceUnavailable):
        return 503
    if isinstance(exc, CallTimeout):
        return 504
    if "lacks the right" in message or "is not an ElasticCode user" in message or "cannot grant" in message \
            or "permission denied" in message:
        return 403
    return 400


def _validation_line(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body",)) or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}: see the OpenAPI document at /openapi.json"


def install(app: FastAPI) -> None:
    @app.exception_handler(ElasticCodeError)
    async def _elasticcode(request: Request, exc: ElasticCodeError) -> JSONResponse:
        return problem(status_of(exc), str(exc), call=getattr(exc, "call", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, _validation_line(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint {request.url.path!r}: see /docs"
        return problem(exc.status_code, detail)

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        line = str(exc.orig).strip().splitlines()[0] if exc.orig else "value out of range"
        return problem(400, f"the database refused a value: {line}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        reason = redact_text(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
        return problem(500, f"unexpected {exc.__class__.__name__}: {reason} (see the API server's log and report it)")


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of an operation (for the OpenAPI document)."""
    content = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {s: {"description": TITLES.get(s, "Error"), "content": content} for s in statuses}
