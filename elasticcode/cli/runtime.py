"""Command groups of the runtime (tasks, processors, agents, workers, listening).

They are listed so `flow --help` shows the manual's whole command tree; the ones that need
running agents say so in one line until the runtime lands.
"""

from __future__ import annotations

import click

import sys
import warnings
from typing import Any

from .. import catalog
from ..errors import ElasticCodeError
from ..runtime import codec
from ..runtime.dispatch import Dispatcher, WaitingWarning, describe_wait
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


def _read_data(data: str | None) -> tuple:
    """The call's argument: --data, else piped stdin (the manual's `echo ... | flow task run`), else none."""
    if data is None:
        stream = sys.stdin
        if stream is None or stream.isatty():
            return ()
        data = stream.read()
        if not data:
            return ()
    return (codec.parse_user_data(data),)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else codec.dumps(value)


@task.command("run")
@click.option("-s", "--socket", "socket_name", required=True, help="Socket to call")
@click.option("-d", "--data", default=None, help="Argument: JSON or a Python literal (default: read stdin)")
@click.option("-k", "--kwargs", "kwargs_json", default=None, help="Keyword arguments as a JSON object")
@click.option("--async", "run_async", is_flag=True, help="Print the call id instead of waiting for the result")
@click.option("-t", "--timeout", type=float, default=None, help="Seconds to wait for the result (default: forever)")
@pass_flow
def task_run(ctx: FlowContext, socket_name: str, data: str | None, kwargs_json: str | None, run_async: bool,
             timeout: float | None) -> Any:
    """Run a socket's function with the given data and print its result"""
    args = _read_data(data)
    kwargs = {}
    if kwargs_json:
        kwargs = codec.parse_user_data(kwargs_json)
        if not isinstance(kwargs, dict):
            raise ElasticCodeError("--kwargs must be a JSON object, e.g. '{\"two\": 2}'")
    dispatcher = Dispatcher.for_settings(ctx.settings)
    target = dispatcher.resolve(socket_name)
    waiting = describe_wait(target)
    if waiting:
        click.secho(f"note: {waiting}", err=True, fg="yellow")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WaitingWarning)  # already said above, in the CLI's words
        result = dispatcher.send(socket_name, args, kwargs)
    if run_async:
        say(ctx, result.id, id=result.id)
        return result.id
    value = wait_for(result, socket_name, timeout)
    if ctx.as_json:
        click.echo(codec.dumps({"id": result.id, "result": value}))
    else:
        click.echo(_show(value))
    return value


def wait_for(result, socket_name: str, timeout: float | None) -> Any:
    """The call's value, or one clear line: its error, or the timeout."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    try:
        return result.get(timeout=timeout, propagate=True, disable_sync_subtasks=False)
    except CeleryTimeout:
        raise ElasticCodeError(
            f"no result from {socket_name} within {timeout:g}s (call {result.id} stays queued; "
            f"check it with `flow ls call --id {result.id}`)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the remote function's error, as the user should see it
        raise ElasticCodeError(f"call {result.id} of {socket_name} failed: {exc.__class__.__name__}: {exc}") from None


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
    """Commands for remote agent management (install kernel_agent to run one)"""


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
@click.option("--count", type=int, default=None, help="Stop after this many messages")
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds")
@pass_flow
def listen(ctx: FlowContext, name: str, channel: str, count: int | None, timeout: float | None) -> None:
    """Listen to a processor output: its call events (task) or its worker log (log)"""
    import time

    from ..runtime import naming
    from ..runtime.coord import coordination_url, redis_client

    client = redis_client(coordination_url(ctx.settings.require_broker(), ctx.settings.backend))
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(naming.channel(name, channel))
    click.echo(f"Listening to {name} ({channel})", err=True)
    seen, deadline = 0, (time.monotonic() + timeout) if timeout else None
    try:
        while (count is None or seen < count) and (deadline is None or time.monotonic() < deadline):
            message = pubsub.get_message(timeout=0.5)
            if message:
                data = message["data"]
                click.echo(data.decode() if isinstance(data, bytes) else data)
                seen += 1
    finally:
        pubsub.close()


@click.group()
def compose() -> None:
    """Manage declarative infrastructure files"""


compose.command("build")(_not_yet("compose build"))


@click.group()
def scheduler() -> None:
    """Scheduler management commands"""


scheduler.command("start")(_not_yet("scheduler start"))
