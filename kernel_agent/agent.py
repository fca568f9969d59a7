"""The node agent: makes this node run what the model database says should run here.

It only composes steps (see `steps.Step`), each with one job: registration, the provenance
recorder, the LISTEN loop's listener, reconcile (publish routes, run workers), supervision,
scaling (the CPUs shared among busy pool processes), log forwarding, failover (silent nodes marked
down, their calls put back) and the heartbeat; and it runs their loop, which outlives any one
failure, so a database outage never stops the workers.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from elasticcode.config import Settings

from .code import CodeCache
from .codeprep import CodePreparer
from .context import AgentContext
from .failover import HEARTBEAT, Failover
from .listener import Listener
from .logs import LogForwarding
from .orphans import Orphans
from .publishing import Publisher
from .reconcile import Reconciler
from .recorder import RecorderStep
from .registration import Heartbeat, Registration
from .scaling import Scaling
from .steps import Step
from .supervision import Supervision

log = logging.getLogger("elasticcode.agent")
POLL = 0.25  # seconds a turn of the loop waits for a notification
RETRY = 1.0  # seconds to wait after a failed turn


class Agent:
    def __init__(self, settings: Settings, home: Path, hostname: str | None = None, cpus: int | None = None,
                 heartbeat: float = HEARTBEAT, stop_timeout: float = 30.0):
        self.context = ctx = AgentContext.create(settings, home, hostname, cpus, heartbeat, stop_timeout)
        self.settings, self.home, self.db_url = settings, home, ctx.db_url
        self.hostname, self.cpus = ctx.hostname, ctx.cpus
        self.stop_event: threading.Event = ctx.stop_event
        self.wake: threading.Event = ctx.wake  # set it to reconcile on the next turn
        self.listener = Listener(ctx)
        scaling = Scaling(ctx)
        recorder = RecorderStep(ctx.db_url, ctx.redis, ctx.stop_event, node=ctx.hostname)
        # Started in this order; ticked in this order every turn; stopped and closed in reverse.
        self.steps: list[Step] = [
            Orphans(ctx),  # first: no worker of a previous life may run beside the new ones
            Registration(ctx),
            recorder,
            self.listener,
            Reconciler(ctx, CodePreparer(CodeCache(home, settings.repositories)), Publisher(ctx.redis), scaling),
            Supervision(ctx),
            scaling,  # the node's CPUs shared among busy pool processes (its own thread)
            LogForwarding(ctx),
            Failover(ctx, recorder.recorder),  # nodes whose agents fell silent: marked down, their calls put back
            Heartbeat(ctx),  # its own thread
        ]

    def run(self) -> None:
        """Until `stop_event` is set; then stops the workers and records the shutdown."""
        started: list[Step] = []
        try:
            for step in self.steps:  # a step that cannot start (no database at all) ends the agent
                step.start()
                started.append(step)
            while not self.stop_event.is_set():
                self.turn()
        finally:
            self.stop_event.set()
            for step in reversed(started):
                step.stop()
            for step in reversed(started):
                step.close()

    def turn(self) -> None:
        """One turn of the loop: wait for a notification, then every step's periodic work."""
        try:
            self.listener.wait(POLL)
            now = time.monotonic()
            for step in self.steps:
                step.tick(now)
        except Exception as exc:  # noqa: BLE001 - the agent must outlive any one failure
            # The database may be down: workers keep running, events queue in Redis.
            log.warning("agent: %s; retrying", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            for step in self.steps:
                step.degraded()
            self.stop_event.wait(RETRY)
