"""pipeline, parallel and funnel: workflows of socket calls with the manual's semantics.

A workflow runs from the client that started it: each step is a durable call on the network,
and the client passes results along (no Celery chords). Every call of a workflow carries the
workflow's root id as its tracking id, and every combinator is itself recorded as a call, so
the whole workflow is one tree in `flow ls call --graph` and in `handle.tree()`.

Semantics: a step that receives an input gets it as its first argument, before the partial's
own arguments (`do_something("Two")` after a step returning r runs do_something(r, "Two")).
`pipeline` runs steps in order; `parallel` runs branches at once, each with the same input,
and returns their results in declaration order; `funnel` runs its branches like `parallel`
and passes the list of results to its final step.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ..errors import ElasticCodeError
from ..runtime.events import FAILURE, POSTRUN, PRERUN, CallEvent, EventStream
from .handles import Handle, WorkflowHandle

NO_INPUT = object()
WORKFLOW = "workflow"  # the processor name combinator calls are recorded under


class WorkflowError(ElasticCodeError):
    """A step of a workflow failed; the message names the socket and its error."""


class Cancelled(ElasticCodeError):
    pass


class Run:
    """What the steps of one workflow share: its root id, the dispatcher, cancellation."""

    def __init__(self, dispatcher, root: str):
        self.dispatcher, self.root = dispatcher, root
        self.events = EventStream(dispatcher.redis)
        self.cancelled = threading.Event()
        self.outstanding: set[str] = set()
        self.finished = 0
        self.lock = threading.Lock()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled(f"workflow {self.root} was cancelled")

    def node(self, name: str, parent: str | None, call_id: str | None = None):
        """Record a combinator as a call of its own (its children name it as parent)."""
        call_id = call_id or str(uuid.uuid4())
        self.events.emit(CallEvent.now(call_id, PRERUN, socket=name, processor=WORKFLOW, tracking=self.root,
                                       parent=parent, user=self.dispatcher.user))
        return call_id

    def close(self, call_id: str, name: str, parent: str | None, started: float, error: str | None = None) -> None:
        self.events.emit(CallEvent.now(call_id, FAILURE if error else POSTRUN, socket=name, processor=WORKFLOW,
                                       tracking=self.root, parent=parent, user=self.dispatcher.user,
                                       duration=time.time() - started, error=error))


class Step:
    """Something a workflow can run: a socket partial or a combinator."""

    def run(self, run: Run, value: Any, parent: str | None, call_id: str | None = None) -> Any:
        raise NotImplementedError

    def __call__(self, first: Step | None = None, *args: Any) -> Handle:
        """Start the workflow; a partial given here runs first and feeds this one (`_funnel(do_something("Four"))`)."""
        from .settings import default_dispatcher

        if args:
            raise ElasticCodeError("a combinator takes at most one step to run first, e.g. _funnel(do_something('x'))")
        step = self if first is None else Pipeline([_as_step(first), self])
        root = str(uuid.uuid4())
        run = Run(default_dispatcher(), root)
        handle = WorkflowHandle(run, type(self).__name__.lower())

        def target():
            try:
                handle.finish(value=step.run(run, NO_INPUT, None, call_id=root))
            except BaseException as exc:  # noqa: BLE001 - delivered to .get()
                handle.finish(error=exc)

        threading.Thread(target=target, name=f"workflow-{root[:8]}", daemon=True).start()
        return handle


def _as_step(item: Any) -> Step:
    if isinstance(item, Step):
        return item
    raise ElasticCodeError(
        f"{item!r} is not a workflow step: use a socket partial (Socket(name=...).p(...)) or pipeline/parallel/funnel"
    )


class Partial(Step):
    """A deferred call of one socket (`Socket(name=...).p("One")`)."""

    def __init__(self, socket: str, args: tuple, kwargs: dict):
        self.socket, self.args, self.kwargs = socket, args, kwargs

    def __repr__(self) -> str:
        return f"{self.socket}.p{self.args!r}"

    def run(self, run: Run, value: Any, parent: str | None, call_id: str | None = None) -> Any:
        run.check()
        args = self.args if value is NO_INPUT else (value, *self.args)
        result = run.dispatcher.send(self.socket, args, self.kwargs, tracking=run.root, parent=parent, call_id=call_id)
        with run.lock:
            run.outstanding.add(result.id)
        try:
            return result.get(disable_sync_subtasks=False)
        except Exception as exc:  # noqa: BLE001 - named and re-raised for the whole workflow
            if isinstance(exc, (WorkflowError, Cancelled)):
                raise
            if run.cancelled.is_set():
                raise Cancelled(f"workflow {run.root} was cancelled") from None
            raise WorkflowError(f"socket {self.socket} failed (call {result.id}): {exc.__class__.__name__}: {exc}") from None
        finally:
            with run.lock:
                run.outstanding.discard(result.id)
                run.finished += 1


class Combinator(Step):
    def __init__(self, steps: Sequence[Any]):
        if not isinstance(steps, (list, tuple)) or not steps:
            raise ElasticCodeError(f"{type(self).__name__.lower()} needs a non-empty list of steps")
        self.steps = [_as_step(s) for s in steps]

    def run(self, run: Run, value: Any, parent: str | None, call_id: str | None = None) -> Any:
        name = type(self).__name__.lower()
        node, started = run.node(name, parent, call_id), time.time()
        try:
            out = self.body(run, value, node)
        except BaseException as exc:
            run.close(node, name, parent, started, error=f"{exc.__class__.__name__}: {exc}")
            raise
        run.close(node, name, parent, started)
        return out

    def body(self, run: Run, value: Any, node: str) -> Any:
        raise NotImplementedError


def _in_parallel(run: Run, steps: Sequence[Step], value: Any, node: str) -> list[Any]:
    """Run steps at once (a thread each: they mostly wait on the network); results in order."""
    results: list[Any] = [None] * len(steps)
    errors: list[BaseException | None] = [None] * len(steps)

    def one(i: int, step: Step) -> None:
        try:
            results[i] = step.run(run, value, node)
        except BaseException as exc:  # noqa: BLE001
            errors[i] = exc

    threads = [threading.Thread(target=one, args=(i, s), daemon=True) for i, s in enumerate(steps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return results


class Pipeline(Combinator):
    def body(self, run: Run, value: Any, node: str) -> Any:
        for step in self.steps:
            value = step.run(run, value, node)
        return value


class Parallel(Combinator):
    def body(self, run: Run, value: Any, node: str) -> list[Any]:
        return _in_parallel(run, self.steps, value, node)


class Funnel(Combinator):
    def __init__(self, steps: Sequence[Any], final: Any = None):
        super().__init__(steps)
        self.final = _as_step(final) if final is not None else None

    def body(self, run: Run, value: Any, node: str) -> Any:
        results = _in_parallel(run, self.steps, value, node)
        return results if self.final is None else self.final.run(run, results, node)


def pipeline(steps: Sequence[Any]) -> Pipeline:
    return Pipeline(steps)


def parallel(steps: Sequence[Any]) -> Parallel:
    return Parallel(steps)


def funnel(steps: Sequence[Any], final: Any = None) -> Funnel:
    return Funnel(steps, final)
