"""Handles on running work: one call (`Socket.delay`) or a whole workflow (`pipeline(...)()`)."""

from __future__ import annotations

import threading
import time
from typing import Any

from ..errors import ElasticCodeError


class Handle:
    """What `.delay()` and workflows return: wait, poll, cancel, inspect."""

    id: str

    def get(self, timeout: float | None = None) -> Any:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError

    def _settings(self):
        from .settings import default_settings

        return default_settings()

    def to_frame(self):
        """The calls of this work recorded so far, as a DataFrame (see elasticcode.history)."""
        from .history import history

        return history(root=self.id, settings=self._settings())

    def tree(self):
        """The call tree as nested dicts (in a notebook the Jupyter extension draws it)."""
        from ..catalog.calls import call_tree
        from ..db.engine import session_scope

        with session_scope(self._settings().require_db()) as session:
            return call_tree(session, self.id, whole_flow=True)

    def _repr_html_(self) -> str:
        from .reprs import html_fields

        state = "finished" if self.ready() else "running"
        if self.ready():
            try:
                self.get(timeout=0)
            except Exception as exc:  # noqa: BLE001 - shown, not raised, in a repr
                state = f"failed: {exc}"
        done, total = self.counts()
        return html_fields(f"{type(self).__name__} {self.id}", {"state": state, "calls finished": f"{done}/{max(done, total)}"})

    def wait_interactive(self, timeout: float | None = None, interval: float = 0.2) -> Any:
        """Wait with progress: a bar in a notebook, a line of text in a terminal."""
        from .progress import progress_for

        bar = progress_for(self)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self.ready():
                if deadline is not None and time.monotonic() > deadline:
                    raise ElasticCodeError(f"{self.id} is not finished after {timeout:g}s: it keeps running; wait again or cancel it")
                bar.update()
                time.sleep(interval)
            value = self.get()
        except BaseException as exc:
            bar.done(error=str(exc))
            raise
        bar.done()
        return value


class CallHandle(Handle):
    """One call of one socket."""

    def __init__(self, result, socket: str):
        self.result, self.socket, self.id = result, socket, result.id

    def __repr__(self) -> str:
        return f"<call {self.socket} {self.id} {self.result.state}>"

    def get(self, timeout: float | None = None) -> Any:
        from celery.exceptions import TimeoutError as CeleryTimeout

        from .dispatch import wait_result

        try:
            return wait_result(self.result, timeout)
        except CeleryTimeout:
            raise ElasticCodeError(f"call {self.id} of {self.socket} has no result after {timeout:g}s: it stays queued or running") from None
        except Exception as exc:  # noqa: BLE001
            raise ElasticCodeError(f"socket {self.socket} failed (call {self.id}): {exc.__class__.__name__}: {exc}") from None

    def ready(self) -> bool:
        return self.result.ready()

    def cancel(self) -> None:
        self.result.revoke()

    def counts(self) -> tuple[int, int]:
        return (1 if self.ready() else 0), 1


class WorkflowHandle(Handle):
    """A running pipeline/parallel/funnel; `.id` is the root id every one of its calls carries."""

    def __init__(self, run, kind: str):
        self.run, self.kind, self.id = run, kind, run.root
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        state = "running" if not self.ready() else ("failed" if self._error else "finished")
        return f"<{self.kind} {self.id} {state}>"

    def finish(self, value: Any = None, error: BaseException | None = None) -> None:
        """Called once by the thread that runs the workflow (client/workflow.py)."""
        self._value, self._error = value, error
        self._done.set()

    def get(self, timeout: float | None = None) -> Any:
        if not self._done.wait(timeout):
            raise ElasticCodeError(f"{self.kind} {self.id} is not finished after {timeout:g}s: wait again or cancel it")
        if self._error is not None:
            raise self._error
        return self._value

    def ready(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Start no new step and revoke the calls in flight (queued ones are dropped by workers)."""
        self.run.cancelled.set()
        with self.run.lock:
            outstanding = list(self.run.outstanding)
        for call_id in outstanding:
            self.run.dispatcher.result(call_id).revoke()

    def counts(self) -> tuple[int, int]:
        """(finished, started) calls so far, from the event stream's point of view."""
        with self.run.lock:
            running = len(self.run.outstanding)
        finished = self.run.finished
        return finished, finished + running
