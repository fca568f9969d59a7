"""`flow scheduler start`: run the interval scheduler in the foreground (elasticcode.client.scheduler)."""

from __future__ import annotations

import signal
import threading

import click

from .context import FlowContext, pass_flow


@click.group()
def scheduler() -> None:
    """Scheduler management commands"""


@scheduler.command("start")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: until Ctrl-C)")
@pass_flow
def scheduler_start(ctx: FlowContext, duration: float | None) -> int:
    """Call every socket that has an interval, every interval seconds (foreground)"""
    from ..client import scheduler as interval

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if duration is not None:
        threading.Timer(duration, stop.set).start()
    try:
        sent = interval.run(ctx.settings, stop, say=lambda line: click.echo(line))
    except KeyboardInterrupt:
        sent = 0
    click.echo(f"scheduler stopped after {sent} calls", err=True)
    return sent
