"""`flow add | update | delete | ls` for every kind, generated from catalog.kinds."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import click

from .. import catalog
from ..catalog import users
from ..catalog.kinds import KINDS, Field, Kind
from ..catalog.ops import ensure
from ..security import check_role_name
from .context import FlowContext, emit, json_flag, pass_flow, say
from .session import password_options, read_password


def _option(f: Field, for_add: bool):
    suffix = (" [required]" if f.required else f" [default: {f.default}]" if f.default is not None else "") if for_add else ""
    kwargs: dict[str, Any] = {"help": f.help + suffix}
    if f.type is bool:
        kwargs["default"] = None
    elif isinstance(f.type, tuple):
        kwargs["type"] = click.Choice(f.type, case_sensitive=False)
    else:
        kwargs["type"] = f.type
    if f.attr == "name":
        kwargs["required"] = True
    return click.option(*f.flags, f.attr, **kwargs)


def _with_fields(kind: Kind, for_add: bool, command):
    for f in reversed(kind.fields):
        command = _option(f, for_add)(command)
    return command


@click.group()
def add() -> None:
    """Add an object to the database"""


@click.group()
def update() -> None:
    """Update a database object"""


@click.group()
def delete() -> None:
    """Delete an object from the database"""


@click.group()
def ls() -> None:
    """List database objects and their relations"""


ROUTED_KINDS = ("socket", "plug")  # the kinds the agents' published routes are made of


@contextlib.contextmanager
def routes_change(ctx: FlowContext, kind: Kind) -> Iterator[dict[str, bool]]:
    """Return only once the agents have published a socket or plug change (at most 2 s), so the
    next call made after the command uses the new routes. Without a reachable Redis, no wait;
    none either when the command sets `changed` False in the dict it gets (nothing was written)."""
    client, before = None, None
    if kind.name in ROUTED_KINDS and (ctx.settings.broker or ctx.settings.backend):
        try:
            from ..runtime import naming
            from ..runtime.connections import coordination_client

            client = coordination_client(ctx.settings.broker, ctx.settings.backend)
            before = client.get(naming.ROUTES_VERSION_KEY)
        except Exception:  # noqa: BLE001 - no coordination store: nothing to wait for
            client = None
    state = {"changed": True}
    yield state
    if client is None or before is None or not state["changed"]:  # no agent has ever published: none to wait for
        return
    deadline = time.monotonic() + 2.0
    try:
        while time.monotonic() < deadline and client.get(naming.ROUTES_VERSION_KEY) == before:
            time.sleep(0.02)
    except Exception:  # noqa: BLE001
        return


def _add_command(kind: Kind):
    def command(ctx: FlowContext, **values: Any) -> None:
        # Re-runnable: the same definition again is "unchanged" (a notebook run twice), a different one is refused.
        with routes_change(ctx, kind) as state, ctx.session() as session:
            obj, added = ensure(session, kind.name, values, ctx.settings.repositories)
            state["changed"] = added
            name, oid = obj.name, obj.id
        say(ctx, f"{kind.name} {name} {'added' if added else 'unchanged'}", id=oid, name=name, added=added)

    command.__doc__ = f"Add a {kind.name} to the database"
    return add.command(kind.name)(pass_flow(_with_fields(kind, True, command)))


def _update_command(kind: Kind):
    def command(ctx: FlowContext, rename: str | None, **values: Any) -> None:
        name = values.pop("name")
        with routes_change(ctx, kind), ctx.session() as session:
            if any(v is not None for v in values.values()):
                catalog.update(session, kind.name, name, values, ctx.settings.repositories)
            if rename:
                catalog.rename(session, kind.name, name, rename)
            elif all(v is None for v in values.values()):
                catalog.update(session, kind.name, name, {})  # raises "nothing to update"
        say(ctx, f"{kind.name} {rename or name} updated", name=rename or name)

    command.__doc__ = f"Update a {kind.name}: only the options given change"
    command = click.option("--rename", help="New name")(command)
    return update.command(kind.name)(pass_flow(_with_fields(kind, False, command)))


def _delete_command(kind: Kind):
    @click.option("-n", "--name", required=True, help=f"Name of the {kind.name}")
    @pass_flow
    def command(ctx: FlowContext, name: str) -> None:
        # Users too are deleted on the caller's own session: the database checks DELETE_USER.
        with routes_change(ctx, kind), ctx.session() as session:
            if kind.name == "user":
                users.delete_user(session, name)
            else:
                catalog.delete(session, kind.name, name)
        say(ctx, f"{kind.name} {name} deleted", name=name)

    command.__doc__ = f"Delete a {kind.name}"
    return delete.command(kind.name)(command)


def _ls_command(kind: Kind):
    @click.option("-n", "--name", default=None, help="Only the object with this name")
    @json_flag
    @pass_flow
    def command(ctx: FlowContext, name: str | None, as_json: bool) -> list[dict[str, Any]]:
        with ctx.session() as session:
            rows = catalog.rows(session, kind.name, name)
        if kind.name == "plug":  # and whether each one's forwards wait for its target to drain now
            from .plugstate import with_pressure

            return emit(ctx, with_pressure(ctx, rows), kind.plural.title(), as_json, columns=(*kind.columns, "pressure"))
        return emit(ctx, rows, kind.plural.title(), as_json, columns=kind.columns)

    command.__doc__ = f"List {kind.plural}"
    return ls.command(kind.plural)(command)


for _kind in KINDS.values():
    _ls_command(_kind)
    if _kind.name in ("user", "privilege", "worker"):
        continue
    _add_command(_kind)
    _update_command(_kind)
    _delete_command(_kind)
_delete_command(KINDS["user"])


@add.command("user")
@click.option("-n", "--name", required=True, help="User name (becomes a PostgreSQL role)")
@click.option("-e", "--email", default=None, help="Email address")
@password_options
@pass_flow
def add_user(ctx: FlowContext, name: str, email: str | None, password_arg: str | None, password_stdin: bool) -> None:
    """Add user object to the database (password prompted; stored only as a SCRAM verifier in PostgreSQL)"""
    check_role_name(name)
    password = users.check_password(read_password(password_arg, password_stdin, confirm=True))
    # On the caller's own session, whatever admin_uri says: the database checks ADD_USER.
    with ctx.session() as session:
        users.add_user(session, name, email, password)
    say(ctx, f'User "{name}" added', name=name)


@update.command("user")
@click.option("-n", "--name", required=True, help="User name")
@click.option("-e", "--email", default=None, help="New email address")
@click.option("--add-role", "role", default=None, help="Put the user in this role")
@pass_flow
def update_user(ctx: FlowContext, name: str, email: str | None, role: str | None) -> None:
    """Update a user (email, roles)"""
    with ctx.session() as session:
        if email:
            users.update_user(session, name, email)
        if role:
            say(ctx, users.add_user_to_role(session, name, role))
    say(ctx, f"user {name} updated", name=name)


@add.command("privilege")
@click.option("-u", "--user", default=None, help="Grant to this user")
@click.option("-n", "--name", required=True, help="Right to grant (e.g. ADD_PROCESSOR)")
@click.option("-r", "--role", default=None, help="Grant to this role")
@pass_flow
def add_privilege(ctx: FlowContext, user: str | None, name: str, role: str | None) -> None:
    """Grant a right (you need ADD_PRIVILEGE and the right itself, or ALL)"""
    with ctx.session() as session:
        message = users.add_privilege(session, name, user=user, role=role)
    say(ctx, message)


@delete.command("privilege")
@click.option("-u", "--user", default=None, help="Revoke from this user")
@click.option("-n", "--name", required=True, help="Right to revoke")
@click.option("-r", "--role", default=None, help="Revoke from this role")
@pass_flow
def delete_privilege(ctx: FlowContext, user: str | None, name: str, role: str | None) -> None:
    """Revoke a privilege"""
    with ctx.session() as session:
        message = users.revoke_privilege(session, name, user=user, role=role)
    say(ctx, message)


@ls.command("user")
@click.option("-n", "--name", required=True, help="User name")
@json_flag
@pass_flow
def ls_user(ctx: FlowContext, name: str, as_json: bool) -> dict:
    """List a user with roles and privileges"""
    with ctx.session() as session:
        info = users.describe_user(session, name)
    if ctx.as_json or as_json:
        emit(ctx, [info], "User", True)
    else:
        emit(ctx, [{k: info[k] for k in ("name", "id", "email")}], "User")
        emit(ctx, [{"name": info["name"], "right": r} for r in info["privileges"]], "Privileges")
        if info["roles"]:
            click.echo("Roles: " + ", ".join(info["roles"]))
    return info
