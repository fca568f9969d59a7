"""`flow proc`: a processor's lifecycle. The commands only record the requested status; the
agents act on it."""

from __future__ import annotations

import click

from .. import catalog
from .context import FlowContext, pass_flow, say


@click.group()
@click.option("--id", "processor_id", default=None, help="ID of processor")
def proc(processor_id: str | None) -> None:
    """Run or manage processors"""


def _lifecycle(action: str, requested: str):
    @click.option("-n", "--name", required=True, help="Processor name")
    @pass_flow
    def command(ctx: FlowContext, name: str) -> None:
        with ctx.session() as session:
            catalog.update(session, "processor", name, {"requested_status": requested})
        say(ctx, f"processor {name}: requested {requested}", name=name, requested_status=requested)

    command.__doc__ = f"{action.capitalize()} a processor (agents act on the requested status)"
    return proc.command(action)(command)


for _action, _state in (("start", "running"), ("stop", "stopped"), ("pause", "paused"), ("resume", "running"),
                        ("restart", "running")):
    _lifecycle(_action, _state)


@proc.command("remove")
@click.option("-n", "--name", required=True, help="Processor name")
@pass_flow
def proc_remove(ctx: FlowContext, name: str) -> None:
    """Remove a processor"""
    with ctx.session() as session:
        catalog.delete(session, "processor", name)
    say(ctx, f"processor {name} removed", name=name)
