"""The shape every part of the agent has, in the spirit of Celery's worker bootsteps.

The agent starts its steps in order, calls `tick` on each every turn of its loop, `degraded`
when a turn failed (the database may be down: keep what can run, running), and at shutdown
`stop` then `close`, both in reverse order, so workers stop before their rows are marked and
connections and threads are released last.
"""

from __future__ import annotations


class Step:
    """A part of the agent with one job; every hook is optional."""

    def start(self) -> None:
        """Called once, in order, before the loop; an exception aborts the start."""

    def tick(self, now: float) -> None:
        """Called every turn of the loop, with `time.monotonic()` of that turn."""

    def degraded(self) -> None:
        """Called after a turn failed, before the agent waits and retries."""

    def stop(self) -> None:
        """Called once at shutdown, in reverse order: stop what this step runs."""

    def close(self) -> None:
        """Called after every step stopped, in reverse order: release connections, join threads."""
