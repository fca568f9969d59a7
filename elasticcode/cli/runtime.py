"""Command groups of the runtime (tasks, processors, agents, workers, listening).

They are listed so `flow --help` shows the manual's whole command tree; the ones that need
running agents say so in one line until the runtime lands.
"""

from __future__ import annotations

import click

from ..errors import ElasticCodeError
from .. import catalog
from .context import FlowContext, pass_flow, say

RUNTIME_MISSING = "needs the ElasticCode runtime (agents and workers), which this version does not ship yet"


def _not_yet(what: str):
    def command() -> None:
        raise ElasticCodeError(f"`flow {what}` {RUNTIME_MISSING}")

    command.__doc__ = f"{what.split()[-1].capitalize()} (arrives with the runtime)"
    return command


@click.group()
def task() -> None:
    """Task management: run a socket's function"""


task.command("run")(_not_yet("task run"))


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


for _action, _state in (("start", "running"), ("stop", "stopped"), ("pause", "paused"), ("resume", "running"), ("restart", "running")):
    _lifecycle(_action, _state)


@proc.command("remove")
@click.option("-n", "--name", required=True, help="Processor name")
@pass_flow
def proc_remove(ctx: FlowContext, name: str) -> None:
    """Remove a processor"""
    with ctx.session() as session:
        catalog.delete(session, "processor", name)
    say(ctx, f"processor {name} removed", name=name)


@click.group()
def agent() -> None:
    """Commands for remote agent management"""


agent.command("start")(_not_yet("agent start"))


@click.group()
def worker() -> None:
    """Run flow worker"""


worker.command("start")(_not_yet("worker start"))


@click.group()
def node() -> None:
    """Node management operations"""


node.command("stats")(_not_yet("node stats"))


@click.command()
@click.option("-n", "--name", required=True, help="Name of processor")
@click.option("-c", "--channel", required=True, help="Listen channel (e.g. task, log)")
@click.option("-a", "--adaptor", default=None, help="Adaptor class function (e.g. my.module.function)")
def listen(name: str, channel: str, adaptor: str | None) -> None:
    """Listen to a processor output"""
    raise ElasticCodeError(f"`flow listen` {RUNTIME_MISSING}")


@click.group()
def compose() -> None:
    """Manage declarative infrastructure files"""


compose.command("build")(_not_yet("compose build"))


@click.group()
def scheduler() -> None:
    """Scheduler management commands"""


scheduler.command("start")(_not_yet("scheduler start"))
