"""`flow call replay ID [--latest-code] [--downstream] [--wait]`: run a recorded call again."""

from __future__ import annotations

import click

from .context import FlowContext, pass_flow, say


@click.group("call")
def call() -> None:
    """Act on recorded calls"""


@call.command("replay")
@click.argument("call_id")
@click.option("--latest-code", is_flag=True,
              help="Run on the processor's current code (default: the commit the call ran, refused if it moved on)")
@click.option("--downstream", is_flag=True, help="Let the replay flow on along today's plugs (default: this call only)")
@click.option("-w", "--wait", "wait", type=float, default=None, metavar="SECONDS",
              help="Wait this long for the replay's result and print it")
@pass_flow
def replay_call(ctx: FlowContext, call_id: str, latest_code: bool, downstream: bool, wait: float | None):
    """Run a recorded call again with its recorded inputs, as a new call linked to it (replay_of)"""
    from ..client.handles import replay_call

    handle = replay_call(call_id, latest_code=latest_code, downstream=downstream, settings=ctx.settings)
    if wait is None:
        say(ctx, f"call {call_id} replayed as {handle.id}", id=handle.id, replay_of=call_id, socket=handle.socket)
    else:
        value = handle.get(timeout=wait)
        say(ctx, f"call {call_id} replayed as {handle.id}: {value!r}", id=handle.id, replay_of=call_id,
            socket=handle.socket, result=value)
    return handle


__all__ = ["call"]
