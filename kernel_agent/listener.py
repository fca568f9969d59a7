"""Listens for network changes (`NOTIFY elasticcode_network`) so the agent reacts within a second, without polling.

It is also the loop's clock: each turn waits on it. A notification, or a new connection (changes
may have been missed while not listening), sets the context's `wake`, so the next reconcile is now.
"""

from __future__ import annotations

import select
from typing import Any

from elasticcode.db.engine import get_engine

from .context import AgentContext
from .steps import Step

CHANNEL = "elasticcode_network"


class Listener(Step):
    def __init__(self, ctx: AgentContext):
        self.ctx = ctx
        self.connection: Any = None  # a raw DBAPI connection LISTENing, or None until (re)connected

    def _connect(self) -> Any:
        raw = get_engine(self.ctx.db_url).raw_connection()
        raw.driver_connection.autocommit = True
        with raw.driver_connection.cursor() as cur:
            cur.execute(f"LISTEN {CHANNEL}")
        return raw

    def wait(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for a notification; connects first when not listening."""
        if self.connection is None:
            self.connection = self._connect()
            self.ctx.wake.set()
        driver = self.connection.driver_connection
        ready, _, _ = select.select([driver], [], [], timeout)
        if ready:
            driver.poll()
            if driver.notifies:
                self.ctx.wake.set()
            driver.notifies.clear()

    def degraded(self) -> None:
        """The turn failed (the database may be down): listen again on a fresh connection."""
        if self.connection is not None:
            self.connection.invalidate()
            self.connection = None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
