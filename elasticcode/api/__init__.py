"""`flow api`: the network over HTTP and WebSockets (an ASGI app on FastAPI, served by uvicorn).

Every request acts as one ElasticCode user: its bearer token (`flow user token`) maps to that
user's database role, and every query of the request runs as that role (`SET LOCAL ROLE`), so
row-level security and the rights functions hold exactly as in the CLI. The server itself logs
in as a member of `elasticcode_api` (migration 0010), which holds no table rights of its own.

Modules: `settings` (where the server connects), `db` (tokens -> roles, sessions as a role),
`problems` (RFC 9457 errors), `schemas` (request and response models), `objects` (queues,
processors, sockets, plugs), `calls` (running sockets, calls, history), `live` (the event and
metrics hubs behind `/ws/events`, `/ws/metrics` and `/metrics`), `app` (the assembly), `server`
(start/stop in the background for `flow api` and `flow up`).
"""


def create_app(*args, **kwargs):
    """The ASGI app (imported lazily: the CLI must not pay for FastAPI on every command)."""
    from .app import create_app as create

    return create(*args, **kwargs)


__all__ = ["create_app"]
