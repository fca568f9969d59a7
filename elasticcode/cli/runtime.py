"""Commands of the running network: tasks, processor lifecycle, nodes, listening, compose files,
the interval scheduler. `agent` and `worker` commands come from kernel_agent (entry points)."""

from __future__ import annotations

import click

import sys
import warnings
from pathlib import Path
from typing import Any

from .. import catalog
from ..errors import ElasticCodeError
from .context import FlowContext, pass_flow, say

@click.group()
def task() -> None:
    """Task management: run a socket's function"""


def _read_data(data: str | None) -> tuple:
    """The call's argument: --data, else piped stdin (the manual's `echo ... | flow task run`), else none."""
    from ..runtime import codec

    if data is None:
        stream = sys.stdin
        if stream is None or stream.isatty():
            return ()
        data = stream.read()
        if not data:
            return ()
    return (codec.parse_user_data(data),)


def _show(value: Any) -> str:
    from ..runtime import codec

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
    # Celery is imported only by the commands that talk to the broker: the others start faster.
    from ..runtime import codec
    from ..runtime.dispatch import Dispatcher, WaitingWarning, describe_wait

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
    """Run flow worker (install kernel_agent to run one)"""


@click.group()
def node() -> None:
    """Node management operations"""


@node.command("stats")
@click.option("-n", "--name", default=None, help="Only this node")
@pass_flow
def node_stats(ctx: FlowContext, name: str | None) -> list[dict]:
    """Show nodes' CPUs, memory, disk, load and their agent's last heartbeat"""
    from ..db import model as m
    from .context import emit

    with ctx.session() as session:
        catalog.ops.rights.require(session, "LS_NODES")
        nodes = session.query(m.Node).order_by(m.Node.name)
        if name:
            nodes = nodes.filter(m.Node.name == name)
        gib = lambda v: None if v is None else round(v / 2**30, 1)  # noqa: E731
        rows = [{"name": n.name, "cpus": n.cpus, "load": n.cpuload, "mem_gib": gib(n.memsize), "free_mem_gib": gib(n.freemem),
                 "disk_gib": gib(n.disksize), "free_disk_gib": gib(n.diskfree),
                 "agent": n.agent.status if n.agent else None, "heartbeat": n.agent.heartbeat if n.agent else None}
                for n in nodes]
    if name and not rows:
        raise ElasticCodeError(f"node {name!r} does not exist: agents register their node when they start")
    return emit(ctx, rows, "Nodes")


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


@click.group()
def scheduler() -> None:
    """Scheduler management commands"""


@scheduler.command("start")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: until Ctrl-C)")
@pass_flow
def scheduler_start(ctx: FlowContext, duration: float | None) -> int:
    """Call every socket that has an interval, every interval seconds (foreground)"""
    import signal
    import threading

    from ..runtime import beat

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if duration is not None:
        threading.Timer(duration, stop.set).start()
    try:
        sent = beat.run(ctx.settings, stop, say=lambda line: click.echo(line))
    except KeyboardInterrupt:
        sent = 0
    click.echo(f"scheduler stopped after {sent} calls", err=True)
    return sent
