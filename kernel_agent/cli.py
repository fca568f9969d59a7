"""`flow agent start`: registered into the `flow` CLI through the `elasticcode.commands` entry point,
so the library never imports the agent."""

from __future__ import annotations

import logging
import os
import signal

import click

from elasticcode.cli.context import FlowContext, pass_flow


@click.group()
def agent() -> None:
    """Commands for remote agent management"""


@agent.command("start")
@click.option("-h", "--hostname", default=None, help="Node name to register (default: this machine's hostname)")
@click.option("--cpus", type=int, default=None, help="CPUs to offer (default: all of this machine's)")
@click.option("--stop-timeout", type=float, default=30.0, show_default=True,
              help="Seconds running calls get to finish when a worker stops")
@pass_flow
def start(ctx: FlowContext, hostname: str | None, cpus: int | None, stop_timeout: float) -> None:
    """Run this node's agent in the foreground (Ctrl-C stops it and its workers)"""
    from .agent import Agent

    logging.basicConfig(level=logging.DEBUG if ctx.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    node_agent = Agent(ctx.settings, ctx.settings.home, hostname=hostname, cpus=cpus, stop_timeout=stop_timeout)

    def stop(signum, frame):  # noqa: ARG001
        node_agent.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"agent {node_agent.hostname} (pid {os.getpid()}) offering {node_agent.cpus} CPUs")
    node_agent.run()
    click.echo("agent stopped")
