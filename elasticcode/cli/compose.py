"""`flow compose build | remove`: apply or undo a declarative JSON/YAML network file."""

from __future__ import annotations

from pathlib import Path

import click

from .context import FlowContext, pass_flow, say


@click.group()
def compose() -> None:
    """Manage declarative infrastructure files"""


def _compose(ctx: FlowContext, path: Path, build: bool) -> list[str]:
    from ..catalog import compose as declarative

    data = declarative.load(path)
    with ctx.session() as session:
        done = declarative.build(session, data, ctx.settings.repositories) if build else declarative.remove(session, data)
    for line in done:
        say(ctx, line)
    return done


@compose.command("build")
@click.argument("path", type=click.Path(path_type=Path))
@pass_flow
def compose_build(ctx: FlowContext, path: Path) -> list[str]:
    """Create or update the queues, processors, sockets and plugs a JSON/YAML file declares"""
    return _compose(ctx, path, build=True)


@compose.command("remove")
@click.argument("path", type=click.Path(path_type=Path))
@pass_flow
def compose_remove(ctx: FlowContext, path: Path) -> list[str]:
    """Delete what a declarative file declares"""
    return _compose(ctx, path, build=False)
