"""`flow login | logout | whoami | user`: which database role the CLI acts as.

Logging in checks the password against PostgreSQL and keeps it only in the libpq password file
(owner-only), never in the ini file or the model database. No password is ever taken on the
command line, where any user of the machine reads it with `ps`: it is prompted (hidden), read
from standard input (`--password-stdin`) or from ELASTICCODE_PASSWORD (for scripts).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import click
import psycopg2

from .. import config
from ..catalog import rights, users
from ..errors import ElasticCodeError
from ..security import check_role_name, pgpass_line, write_private_file
from .context import FlowContext, pass_flow, say

ENV_PASSWORD = "ELASTICCODE_PASSWORD"
_PROMPT = "\0prompt"  # what a bare `-p` stands for: ask


def password_options(f: Callable) -> Callable:
    """`-p/--password` (a bare flag: prompt; a value is refused) and `--password-stdin`."""
    f = click.option("--password-stdin", "password_stdin", is_flag=True, default=False,
                     help=f"Read the password from the first line of standard input (or set {ENV_PASSWORD})")(f)
    return click.option("-p", "--password", "password_arg", is_flag=False, flag_value=_PROMPT, default=None,
                        help="Prompt for the password (the default; it is never taken as a value: `ps` would show it)")(f)


def read_password(password_arg: str | None, password_stdin: bool, confirm: bool, label: str = "Password") -> str:
    """The password from stdin, ELASTICCODE_PASSWORD or a hidden prompt; never from the command line."""
    if password_arg not in (None, _PROMPT):
        raise ElasticCodeError(
            "a password is never given on the command line (every user of this machine sees it with `ps`): "
            f"drop the value after -p to be prompted, or use --password-stdin or {ENV_PASSWORD}"
        )
    if password_stdin:
        line = click.get_text_stream("stdin").readline().rstrip("\r\n")
        if not line:
            raise ElasticCodeError("--password-stdin: no password on the first line of standard input")
        return line
    if os.environ.get(ENV_PASSWORD):
        return os.environ[ENV_PASSWORD]
    return click.prompt(label, hide_input=True, confirmation_prompt=confirm)


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
@click.option("-u", "--user", "-n", "--name", "user", required=True, help="User name")
@password_options
@pass_flow
def login(ctx: FlowContext, user: str, password_arg: str | None, password_stdin: bool) -> None:
    """Log into flow CLI (the password is prompted)"""
    check_role_name(user)
    password = read_password(password_arg, password_stdin, confirm=False)
    current = ctx.settings.require_db()
    target = _as_user(current, user, str(ctx.settings.home / "pgpass"))
    parts = urlsplit(target)
    try:
        psycopg2.connect(_libpq_dsn(target), password=password, connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ElasticCodeError(f"login as {user!r} failed ({reason}): check the name and password") from None
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
@password_options
@pass_flow
def user_password(ctx: FlowContext, name: str, password_arg: str | None, password_stdin: bool) -> None:
    """Change a user's password (yours, or anyone's with UPDATE_USER; sent as a SCRAM verifier only)"""
    check_role_name(name)
    password = users.check_password(read_password(password_arg, password_stdin, confirm=True, label="New password"))
    with ctx.session() as session:
        message = users.set_password(session, name, password)
    say(ctx, message)
