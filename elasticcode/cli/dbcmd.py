"""`flow db`: schema lifecycle on the admin connection."""

from __future__ import annotations

import click

from ..db import schema
from .context import FlowContext, pass_flow


def _admin_url(ctx: FlowContext) -> str:
    ctx.settings.require_db()
    return ctx.settings.admin_url or ""


@click.group()
def db() -> None:
    """Database operations"""


@db.command()
@pass_flow
def init(ctx: FlowContext) -> None:
    """Initialize database tables"""
    schema.init(_admin_url(ctx), click.echo)
    click.echo("Database create all schemas done.")


@db.command()
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation")
@pass_flow
def drop(ctx: FlowContext, yes: bool) -> None:
    """Drop all database tables"""
    if not yes:
        click.confirm("Drop every ElasticCode table and all their data?", abort=True)
    schema.drop(_admin_url(ctx), click.echo)


@db.command()
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation")
@pass_flow
def rebuild(ctx: FlowContext, yes: bool) -> None:
    """Drop and rebuild database tables"""
    if not yes:
        click.confirm("Drop and recreate every ElasticCode table (all data is lost)?", abort=True)
    schema.rebuild(_admin_url(ctx), click.echo)


@db.command("json")
@pass_flow
def dump_json(ctx: FlowContext) -> None:
    """Dump the database to JSON"""
    click.echo(schema.dump_json(ctx.settings.require_db()))


@db.command()
@pass_flow
def migrate(ctx: FlowContext) -> None:
    """Perform database migration/upgrade"""
    schema.migrate(_admin_url(ctx), click.echo)
