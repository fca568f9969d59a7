"""`flow login | logout | whoami | user`: which database role the CLI acts as.

Logging in checks the password against PostgreSQL and keeps it only in the libpq password file
(owner-only), never in the ini file or the model database.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import click
import psycopg2
from psycopg2 import sql

from .. import config
from ..catalog import rights
from ..errors import ElasticCodeError
from ..security import check_role_name, pgpass_line, scram_verifier, write_private_file
from .context import FlowContext, pass_flow, say


def _as_user(url: str, user: str, passfile: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    query = dict(parse_qsl(parts.query))
    query["passfile"] = passfile
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))


def _libpq_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


@click.command()
@click.option("-u", "--user", required=True, help="User name")
@click.option("-p", "--password", prompt=True, hide_input=True, help="Password (prompted)")
@pass_flow
def login(ctx: FlowContext, user: str, password: str) -> None:
    """Log into flow CLI"""
    check_role_name(user)
    current = ctx.settings.require_db()
    target = _as_user(current, user, str(ctx.settings.home / "pgpass"))
    parts = urlsplit(target)
    try:
        psycopg2.connect(_libpq_dsn(target), password=password, connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        raise ElasticCodeError(f"login as {user!r} failed ({str(exc).strip().splitlines()[0]}): check the name and password") from None
    passfile = ctx.settings.home / "pgpass"
    kept = passfile.read_text(encoding="utf-8").splitlines(keepends=True) if passfile.exists() else []
    kept = [line for line in kept if line.split(":")[3:4] != [user]]
    write_private_file(passfile, "".join(kept) + pgpass_line(parts.hostname or "localhost", user, password))
    previous = config.previous_db(ctx.settings.ini_path) or current
    config.save(ctx.settings.ini_path, db=target, previous_db=previous)
    say(ctx, f"logged in as {user}", user=user)


@click.command()
@pass_flow
def logout(ctx: FlowContext) -> None:
    """Logout current user"""
    previous = config.previous_db(ctx.settings.ini_path)
    if not previous:
        raise ElasticCodeError("not logged in: `flow login -u NAME` first")
    user = urlsplit(ctx.settings.require_db()).username
    passfile = ctx.settings.home / "pgpass"
    if passfile.exists() and user:
        kept = [line for line in passfile.read_text(encoding="utf-8").splitlines(keepends=True) if line.split(":")[3:4] != [user]]
        write_private_file(passfile, "".join(kept))
    config.save(ctx.settings.ini_path, db=previous, previous_db="")
    say(ctx, f"logged out {user}", user=user)


@click.command()
@pass_flow
def whoami(ctx: FlowContext) -> dict:
    """Database login user"""
    with ctx.session() as session:
        role = rights.current_role(session)
        operator = rights.is_operator(session)
        held = sorted(rights.held_rights(session, role))
    say(ctx, f"{role}" + (" (operator: all rights)" if operator else f" (rights: {', '.join(held) or 'none'})"),
        user=role, operator=operator, rights=held)
    return {"user": role, "operator": operator, "rights": held}


@click.group()
def user() -> None:
    """User commands"""


@user.command("password")
@click.option("-n", "--name", required=True, help="User whose password changes")
@click.option("-p", "--password", prompt=True, hide_input=True, confirmation_prompt=True, help="New password (prompted)")
@pass_flow
def user_password(ctx: FlowContext, name: str, password: str) -> None:
    """Change a user's password (sent to PostgreSQL as a SCRAM verifier only)"""
    check_role_name(name)
    if len(password) < 8:
        raise ElasticCodeError("password is too short: use at least 8 characters")
    with ctx.session(admin=True) as session:
        rights.require(session, "UPDATE_USER")
        with session.connection().connection.dbapi_connection.cursor() as cur:
            cur.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(name), sql.Literal(scram_verifier(password))))
    say(ctx, f"password of {name} changed")
