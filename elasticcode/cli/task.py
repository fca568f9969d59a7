"""`flow task run`: call a socket's function and print its result (or, with --async, the call id).

It waits 300 s by default: long enough for normal work, and bounded. When the socket's processor
cannot run now (stopped, in error, no agent), it says why at once and gives up after 10 s with one
line naming the call, which stays queued and runs once the processor does. `-t inf` waits forever.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import click

from ..errors import ElasticCodeError
from .context import FlowContext, pass_flow, say

DEFAULT_TIMEOUT = 300.0  # seconds for a socket whose processor runs
WAITING_TIMEOUT = 10.0  # seconds for one whose processor cannot run now: the call stays queued anyway


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
@click.option("-t", "--timeout", type=click.FloatRange(min=0), default=None,
              help=f"Seconds to wait for the result (default {DEFAULT_TIMEOUT:g}, or {WAITING_TIMEOUT:g} when the "
                   "processor cannot run now; inf: forever)")
@pass_flow
def task_run(ctx: FlowContext, socket_name: str, data: str | None, kwargs_json: str | None, run_async: bool,
             timeout: float | None) -> Any:
    """Run a socket's function with the given data and print its result"""
    # Celery is imported only by the commands that talk to the broker: the others start faster.
    from ..client.dispatch import Dispatcher, WaitingWarning, describe_wait
    from ..runtime import codec

    args = _read_data(data)
    kwargs = {}
    if kwargs_json:
        kwargs = codec.parse_user_data(kwargs_json)
        if not isinstance(kwargs, dict):
            raise ElasticCodeError("--kwargs must be a JSON object, e.g. '{\"two\": 2}'")
    dispatcher = Dispatcher.for_settings(ctx.settings)
    target = dispatcher.resolve(socket_name)
    waiting = describe_wait(target)
    if timeout is None:
        timeout = WAITING_TIMEOUT if waiting else DEFAULT_TIMEOUT
    if waiting and not run_async:
        click.secho(f"note: {waiting} (waiting {timeout:g}s for it; -t sets how long)", err=True, fg="yellow")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WaitingWarning)  # said above, in the CLI's words
        result = dispatcher.send(socket_name, args, kwargs)
    if run_async:
        if waiting:
            click.secho(f"note: {waiting}", err=True, fg="yellow")
        say(ctx, result.id, id=result.id)
        return result.id
    value = wait_for(result, socket_name, timeout, dispatcher)
    if ctx.as_json:
        click.echo(codec.dumps({"id": result.id, "result": value}))
    else:
        click.echo(_show(value))
    return value


def wait_for(result, socket_name: str, timeout: float, dispatcher) -> Any:
    """The call's value, or one clear line: its error, or the timeout with why the call waits."""
    import math

    from celery.exceptions import TimeoutError as CeleryTimeout

    from ..client.dispatch import describe_wait

    try:
        return result.get(timeout=None if math.isinf(timeout) else timeout, propagate=True, disable_sync_subtasks=False)
    except CeleryTimeout:
        follow = f"follow it with `flow ls call --id {result.id}`"
        try:
            waiting = describe_wait(dispatcher.resolve(socket_name))  # now, not when it was sent
        except ElasticCodeError:
            waiting = None
        if waiting:
            raise ElasticCodeError(f"call {result.id} to {socket_name} has no result after {timeout:g}s and stays "
                                   f"queued: {waiting} ({follow})") from None
        raise ElasticCodeError(f"call {result.id} to {socket_name} has no result after {timeout:g}s: it stays queued or "
                               f"running and will finish; {follow}, or wait longer with -t") from None
    except Exception as exc:  # noqa: BLE001 - the remote function's error, as the user should see it
        raise ElasticCodeError(f"call {result.id} of {socket_name} failed: {exc.__class__.__name__}: {exc}") from None
