"""The ASGI app: routers, problem details, the live hubs, and the OpenAPI document."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from . import calls, objects, problems, streams
from .deps import ApiContext
from .dispatch import Dispatchers
from .live import Hubs
from .settings import ApiSettings


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("elasticcode")
    except PackageNotFoundError:  # a source tree
        return "0.0.0"


DESCRIPTION = """The ElasticCode network over HTTP: the same operations as `flow`, with the same checks and
the same one-line errors (as RFC 9457 problem details).

Every request acts as the ElasticCode user whose token it carries (`Authorization: Bearer <token>`,
from `flow user token`), and every query runs as that user's database role: row-level security
and rights hold exactly as in the CLI. Lists are paged (`page`, `rows`). `/ws/events` and
`/ws/metrics` stream call events and per-node figures (WebSockets, same header)."""


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title="ElasticCode API", version=_version(), description=DESCRIPTION, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = problems.Problem.model_json_schema()
    app.openapi_schema = schema
    return schema


MAX_BODY = 16 << 20  # bytes of a request body (a call's arguments are refused above 8 MB anyway)


class BodyLimit:
    """Refuse a request body over MAX_BODY (413) before it is read into memory."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            return await problems.problem(413, f"the request body is over {MAX_BODY >> 20} MB: pass a path or URL "
                                               "to the data instead")(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise problems.BodyTooLarge(f"the request body is over {MAX_BODY >> 20} MB")
            return message

        return await self.app(scope, counted, send)


def create_app(settings: ApiSettings, *, check_login: bool = True) -> FastAPI:
    from ..runtime.connections import coordination_client
    from .db import check_login as check

    if check_login:
        check(settings.db)
    api = ApiContext(settings)
    api.dispatchers = Dispatchers(settings.flow, api.as_role)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        api.hubs = Hubs(lambda: coordination_client(settings.broker, settings.backend))
        api.hubs.start()
        try:
            yield
        finally:
            await api.hubs.close()

    app = FastAPI(title="ElasticCode API", version=_version(), description=DESCRIPTION, lifespan=lifespan)
    app.state.api = api
    app.add_middleware(BodyLimit)
    problems.install(app)
    app.include_router(objects.router)
    app.include_router(calls.router)
    app.include_router(streams.router)

    @app.get("/health", tags=["live"], summary="The server answers (no token needed)", operation_id="health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def spec() -> dict[str, Any]:
    """The OpenAPI document, without a server or a database (for `flow api spec`)."""
    app = create_app(ApiSettings(db="postgresql+psycopg2://unused@localhost/unused", broker=None, backend=None),
                     check_login=False)
    return app.openapi()
