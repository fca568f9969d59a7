"""`flow agent start`: registered into the `flow` CLI through the `elasticcode.commands` entry point,
so the library never imports the agent."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

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


@click.group()
def worker() -> None:
    """Run flow worker"""


@worker.command("start")
@click.option("-n", "--name", required=True, help="Processor whose worker to run")
@pass_flow
def worker_start(ctx: FlowContext, name: str) -> None:
    """Run one processor's worker in the foreground, without an agent (for debugging a processor).

    Plugs and call records still need an agent somewhere on the network: it publishes the
    routes and records events."""
    from sqlalchemy import func, select

    from elasticcode import catalog
    from elasticcode.db.engine import session_scope

    from .code import CodeCache
    from .codeprep import CodePreparer, worker_spec
    from .context import AgentContext
    from .sandbox import Sandbox

    helper = AgentContext.create(ctx.settings, ctx.settings.home)  # the settings an agent would run with
    code = CodePreparer(CodeCache(helper.home, ctx.settings.repositories))
    with session_scope(helper.db_url) as session:
        proc = catalog.find(session, "processor", name)
        sockets = [s for s in proc.sockets if s.enabled]
        if not sockets:
            raise click.ClickException(f"processor {name!r} has no sockets: add one with `flow add socket -pn {name}`")
        prepared = code.prepare(proc)
        call_key = session.execute(select(func.elasticcode_call_key())).scalar_one()  # the user's own
        spec = worker_spec(proc, prepared, sockets, helper.broker, helper.backend, helper.hostname, call_key=call_key)
    spec_path = ctx.settings.home / "workers" / f"{name}.foreground.json"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec.write(spec_path)
    click.echo(f"worker of {name} at commit {prepared.commit[:12]} ({len(sockets)} sockets)", err=True)
    python = str(prepared.python)
    # The processor's code gets an environment built from nothing, as under an agent: no
    # ELASTICCODE_*, PG* or other variable of this shell. It runs as you, though, and can read
    # what you can (an agent run as root gives it a user of its own: `flow agent start`).
    run_home = Sandbox.own_user().owned_dir(spec_path.with_suffix(".home"))
    env = Sandbox.own_user().env(Path(python).parent, run_home)
    os.execve(python, [python, "-m", "elasticcode.runtime.worker", "--spec", str(spec_path)], env)
