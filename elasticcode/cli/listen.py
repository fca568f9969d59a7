"""`flow listen`: print what a processor publishes on a Redis channel (call events, worker log)."""

from __future__ import annotations

import time

import click

from .context import FlowContext, pass_flow


@click.command()
@click.option("-n", "--name", required=True, help="Name of processor")
@click.option("-c", "--channel", required=True, help="Listen channel (e.g. task, log)")
@click.option("--count", type=int, default=None, help="Stop after this many messages")
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds")
@pass_flow
def listen(ctx: FlowContext, name: str, channel: str, count: int | None, timeout: float | None) -> None:
    """Listen to a processor output: its call events (task) or its worker log (log)"""
    from ..runtime import naming
    from ..runtime.connections import coordination_client

    client = coordination_client(ctx.settings.require_broker(), ctx.settings.backend)
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
