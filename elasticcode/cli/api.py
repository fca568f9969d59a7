"""`flow api start|stop|status|spec` (the HTTP API server) and `flow user token` (its bearer tokens)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..catalog import tokens
from ..errors import ElasticCodeError
from .context import FlowContext, emit, pass_flow, say


@click.group()
def api() -> None:
    """API server admin: the network over HTTP and WebSockets"""


@api.command("start")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default)")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default 8765, or a free one)")
@pass_flow
def api_start(ctx: FlowContext, host: str, port: int | None) -> dict:
    """Start the API server in the background (log in $ELASTICCODE_HOME/api.log)"""
    from ..api import server, settings

    settings.load(ctx.settings.ini_path if ctx.settings.ini_path.exists() else None)  # one clear line if unconfigured
    found = server.start(ctx.settings.home, ctx.settings.ini_path, host, port)
    say(ctx, f"API server running at {found['url']} (pid {found['pid']}); log: {server.log_path(ctx.settings.home)}",
        **found)
    return found


@api.command("stop")
@pass_flow
def api_stop(ctx: FlowContext) -> None:
    """Stop the API server"""
    from ..api import server

    stopped = server.stop(ctx.settings.home)
    say(ctx, "API server stopped" if stopped else "API server was not running", stopped=stopped)


@api.command("status")
@pass_flow
def api_status(ctx: FlowContext) -> dict:
    """Show whether the API server runs, and where"""
    from ..api import server

    found = server.running(ctx.settings.home)
    row = {"running": bool(found), "url": (found or {}).get("url", ""), "pid": (found or {}).get("pid"),
           "log": str(server.log_path(ctx.settings.home))}
    emit(ctx, [row], "API server")
    return row


@api.command("spec")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the OpenAPI document to this file (default: print it)")
@pass_flow
def api_spec(ctx: FlowContext, output: Path | None) -> None:
    """Print (or write) the OpenAPI document the server serves at /openapi.json"""
    from ..api.app import spec

    text = json.dumps(spec(), indent=2, sort_keys=True) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        if output.exists() and not _is_openapi(output):  # -o never clobbers a file that is something else
            raise ElasticCodeError(f"{output} exists and is not an OpenAPI document: remove it first, or choose another file")
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ElasticCodeError(f"cannot write {output}: {exc.strerror}") from None
    click.echo(f"OpenAPI document written to {output}", err=True)


def _is_openapi(path: Path) -> bool:
    try:
        return "openapi" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        return False


@click.command("token")
@click.option("--revoke", "revoke", is_flag=True, help="Revoke your tokens (all of them, or the one --id names)")
@click.option("--id", "token_id", default=None, help="With --revoke: only this token (see --list)")
@click.option("--list", "listing", is_flag=True, help="List your tokens (ids and dates; never the secret)")
@pass_flow
def user_token(ctx: FlowContext, revoke: bool, token_id: str | None, listing: bool):
    """Issue a bearer token for the HTTP API (printed once; the database keeps only its hash)"""
    if token_id and not revoke:
        raise click.UsageError("--id goes with --revoke")
    if revoke and listing:
        raise click.UsageError("--revoke and --list are two actions: pick one")
    with ctx.session() as session:
        if listing:
            return emit(ctx, tokens.listing(session), "API tokens")
        if revoke:
            count = tokens.revoke(session, token_id)
            if token_id and not count:
                raise ElasticCodeError(f"token {token_id} is not one of your live tokens: list them with `flow user token --list`")
            say(ctx, f"revoked {count} token{'s' if count != 1 else ''}", revoked=count)
            return count
        value = tokens.issue(session)
    if ctx.as_json:
        click.echo(json.dumps({"token": value}))
    else:
        click.echo(value)
    return value
