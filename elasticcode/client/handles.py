"""Handles on running work: one call (`Socket.delay`) or a whole workflow (`pipeline(...)()`)."""

from __future__ import annotations

import threading
import time
from typing import Any

from ..errors import ElasticCodeError

WHY_AFTER, WHY_EVERY = 3.0, 5.0  # seconds: when a waiting bar first says why, and how often it looks again


class Handle:
    """What `.delay()` and workflows return: wait, poll, cancel, inspect."""

    id: str

    def get(self, timeout: float | None = None) -> Any:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError

    def failed(self) -> bool:
        """Finished with an error (or cancelled): `.get()` raises it."""
        raise NotImplementedError

    def _settings(self):
        from .settings import default_settings

        return default_settings()

    def to_frame(self):
        """The calls of this work as a DataFrame (see elasticcode.history); once `.get()` has
        returned, they include every call it waited for."""
        from .history import history
        from .recorded import settle

        settings = self._settings()
        settle(settings, [self.id])
        return history(root=self.id, settings=settings)

    def tree(self):
        """The call tree as nested dicts (in a notebook the Jupyter extension draws it)."""
        from ..catalog.calls import call_tree
        from ..db.engine import session_scope
        from .recorded import settle

        settings = self._settings()
        settle(settings, [self.id])
        with session_scope(settings.require_db()) as session:
            return call_tree(session, self.id, whole_flow=True)

    def flow(self, wait: bool = False, timeout: float = 60.0):
        """The whole flow run as a DataFrame with each call's `result`: this work's calls and
        those its plugs started downstream. With `wait=True`, first wait (at most `timeout`
        seconds) until the run is complete: every call closed and every plug's call made."""
        from .flowrun import flow_frame

        return flow_frame(self, self._settings(), wait=wait, timeout=timeout)

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

    def waiting_for(self) -> str | None:
        """Why this work may not be moving (its processor is not running), or None."""
        return None

    def wait_interactive(self, timeout: float | None = None, interval: float = 0.2) -> Any:
        """Wait with progress: a bar in a notebook, a line of text in a terminal. A call whose
        processor is not running says so on the bar; interrupting stops the wait, not the work."""
        from .progress import progress_for

        bar = progress_for(self)
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        next_check = started + WHY_AFTER
        try:
            while not self.ready():
                now = time.monotonic()
                if deadline is not None and now > deadline:
                    bar.done(error=f"not finished after {timeout:g}s: still queued or running", waiting=True)
                    raise ElasticCodeError(f"{self.id} is not finished after {timeout:g}s: it keeps running; wait again or cancel it")
                bar.update()
                if now >= next_check:
                    bar.note(self.waiting_for())
                    next_check = now + WHY_EVERY
                time.sleep(interval)
            value = self.get()
        except KeyboardInterrupt:
            bar.done(error="interrupted: the calls go on (cancel() stops them)", waiting=True)
            raise
        except ElasticCodeError as exc:
            if not self.ready():
                raise  # the bar already says it is waiting
            bar.done(error=str(exc))
            raise
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
        from .recorded import note_call

        try:
            value = wait_result(self.result, timeout)
        except CeleryTimeout:
            raise ElasticCodeError(f"call {self.id} of {self.socket} has no result after {timeout:g}s: it stays queued or running") from None
        except Exception as exc:  # noqa: BLE001
            note_call(self.id)
            raise ElasticCodeError(f"socket {self.socket} failed (call {self.id}): {exc.__class__.__name__}: {exc}") from None
        note_call(self.id)  # readers of the history wait until the recorder has this call
        return value

    def ready(self) -> bool:
        return self.result.ready()

    def failed(self) -> bool:
        return self.result.state in ("FAILURE", "REVOKED")

    def waiting_for(self) -> str | None:
        if self.result.state != "PENDING":  # taken by a worker: it runs
            return None
        from .dispatch import describe_wait
        from .settings import default_dispatcher

        try:
            return describe_wait(default_dispatcher().resolve(self.socket))
        except ElasticCodeError:
            return None

    def cancel(self) -> None:
        self.result.revoke()

    def counts(self) -> tuple[int, int]:
        return (1 if self.ready() else 0), 1

    def replay(self, latest_code: bool = False, downstream: bool = False) -> CallHandle:
        """Run this call again with its recorded inputs, as a new call linked to it (`replay_of`):
        at the commit it ran, or today's with `latest_code`; along today's plugs with `downstream`."""
        if self.ready():  # noted as done, so the replay finds its record at once (client/recorded.py)
            try:
                self.get(timeout=5)
            except ElasticCodeError:
                pass  # replaying a failed call is the point
        return replay_call(self.id, latest_code=latest_code, downstream=downstream, settings=self._settings())


def replay_call(call_id: str, latest_code: bool = False, downstream: bool = False, settings=None) -> CallHandle:
    """Replay a recorded call by id (`flow call replay`, `%flow replay`): the new call's handle."""
    from .replay import send_replay

    sent, socket = send_replay(call_id, latest_code=latest_code, downstream=downstream, settings=settings)
    return CallHandle(sent, socket)


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
        from .recorded import note_workflow

        if not self._done.wait(timeout):
            raise ElasticCodeError(f"{self.kind} {self.id} is not finished after {timeout:g}s: wait again or cancel it")
        if not self.run.cancelled.is_set():  # revoked calls may never be recorded as closed
            note_workflow(self.id, self.run.finished)
        if self._error is not None:
            raise self._error
        return self._value

    def ready(self) -> bool:
        return self._done.is_set()

    def failed(self) -> bool:
        return self._done.is_set() and self._error is not None

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
