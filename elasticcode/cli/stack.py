"""`flow up | down | status`: the embedded local stack (PostgreSQL, Redis, later an agent)."""

from __future__ import annotations

import getpass

import click

from .. import config, embedded
from ..api import settings as api_settings
from ..db import schema
from ..db.engine import dispose_all
from ..embedded import stack as embedded_stack
from ..errors import ElasticCodeError
from ..security import redact_url
from .context import FlowContext, emit, pass_flow, say


def start_local_agent(ctx: FlowContext) -> None:
    """Start this node's agent in the background (when kernel_agent is installed)."""
    from . import local_agent

    pid = local_agent.start(ctx.settings.home, ctx.settings.ini_path)
    if pid:
        click.echo(f"agent running (pid {pid}); log: {local_agent.log_path(ctx.settings.home)}")


def start_local_api(ctx: FlowContext) -> None:
    """Start the HTTP API on loopback (`flow api`); a failure costs one line, never the stack."""
    import importlib.util

    from ..api import server

    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        return
    try:
        found = server.start(ctx.settings.home, ctx.settings.ini_path)
        click.echo(f"API server running at {found['url']} (pid {found['pid']}); tokens: `flow user token`")
    except ElasticCodeError as exc:
        click.secho(f"warning: the API server did not start: {exc}", err=True, fg="yellow")


@click.command()
@pass_flow
def up(ctx: FlowContext) -> None:
    """Bring up the local stack (PostgreSQL, Redis) and point the configuration at it"""
    home = ctx.settings.home
    urls = embedded.up(home, progress=click.echo)
    schema.init(urls.admin_db, click.echo)
    schema.enrol(urls.admin_db, urls.app_role, email=f"{getpass.getuser()}@localhost")
    # Agents log in as elasticcode_agent (a member of elasticcode_service), never as the admin.
    service_db = embedded_stack.ensure_service_role(home)
    config.save(ctx.settings.ini_path, db=urls.db, admin_db=urls.admin_db, service_db=service_db, broker=urls.broker,
                backend=urls.backend)
    ctx.settings = config.with_overrides(ctx.settings, db=urls.db, admin_db=urls.admin_db, service_db=service_db,
                                         broker=urls.broker, backend=urls.backend)
    api_settings.save_api_db(ctx.settings.ini_path, embedded_stack.ensure_api_role(home))  # the API's own login
    start_local_agent(ctx)
    start_local_api(ctx)
    say(ctx, f"stack is up; configuration written to {ctx.settings.ini_path}",
        db=redact_url(urls.db), broker=redact_url(urls.broker), backend=redact_url(urls.backend), ini=str(ctx.settings.ini_path))
    if not ctx.as_json:
        click.echo(f"  database: {redact_url(urls.db)}")
        click.echo(f"  broker:   {redact_url(urls.broker)}")
        click.echo(f"  backend:  {redact_url(urls.backend)}")


@click.command()
@pass_flow
def down(ctx: FlowContext) -> None:
    """Stop the local stack; all data is kept for the next `flow up`"""
    from ..api import server as api_server
    from ..embedded.workers import stop_orphan_workers
    from . import local_agent

    dispose_all()
    stopped = ["api"] if api_server.stop(ctx.settings.home) else []
    stopped += (["agent"] if local_agent.stop(ctx.settings.home, progress=click.echo) else [])
    orphans = stop_orphan_workers(ctx.settings.home)  # left by an agent that was killed, not stopped
    if orphans:
        click.echo(f"stopped {orphans} worker(s) that a killed agent had left running")
        stopped.append("workers")
    stopped += embedded.down(ctx.settings.home, progress=click.echo)
    say(ctx, "stack is down (data kept)" if stopped else "stack was not running", stopped=stopped)


@click.command()
@pass_flow
def status(ctx: FlowContext) -> list[dict]:
    """Show the local stack's services and the configured URLs"""
    from . import local_agent

    rows = [
        {"service": s.name, "running": s.running, "pid": s.pid, "address": s.address, "detail": s.detail}
        for s in embedded.status(ctx.settings.home)
    ]
    agent_pid = local_agent.running_pid(ctx.settings.home)
    rows.append({"service": "agent", "running": agent_pid is not None, "pid": agent_pid, "address": "",
                 "detail": str(local_agent.log_path(ctx.settings.home))})
    from ..api import server as api_server

    api = api_server.running(ctx.settings.home)
    rows.append({"service": "api", "running": api is not None, "pid": (api or {}).get("pid"),
                 "address": (api or {}).get("url", ""), "detail": str(api_server.log_path(ctx.settings.home))})
    emit(ctx, rows, "Local stack")
    if not ctx.as_json:
        s = ctx.settings
        click.echo(f"configuration: {s.ini_path}{'' if s.ini_path.exists() else ' (not created yet)'}")
        click.echo(f"  database: {redact_url(s.db) or '-'}")
        click.echo(f"  agents:   {redact_url(s.service_url) or '-'}")
        click.echo(f"  broker:   {redact_url(s.broker) or '-'}")
        click.echo(f"  backend:  {redact_url(s.backend) or '-'}")
        if s.db:
            try:
                click.echo(f"  schema revision: {schema.current_revision(s.db) or 'none (run `flow db init`)'}")
            except ElasticCodeError as exc:
                click.echo(f"  database unreachable: {exc}")
    return rows
