"""pipeline, parallel and funnel: workflows of socket calls, with Celery's chain, group and chord rules.

The manual's section 5.6, with do_something(*messages) returning "TEXT:" + "|".join(messages):

    _funnel = funnel([do_something("Eight"), _parallel, do_something("Nine")])
    _funnel(do_something("Four")).get()   # the funnel's results, as one list, go to do_something("Four")

For a step `socket.p(*own)` (Celery's signature `task.s(*own)`):
- given inputs, it runs socket(*inputs, *own): inputs come first, as Celery prepends them; keyword
  arguments given at call time update its own.
- `pipeline` (Celery's chain) runs its steps in order, each result the input of the next.
- `parallel` (group) runs its branches at once, each with the same inputs, and returns their results
  in declaration order.
- `funnel` (chord) runs its branches like `parallel` and passes the list of their results to its final
  step (without one it returns the list). Called with a step, that step is the final step, as
  `chord(header)(body)` makes `body` the one that receives the list (it replaces a final step given
  to funnel(), as Celery does).
- Called with values (`()`, `.delay(*args)`, `.apply_async(args=...)`), a pipeline passes them to its
  first step, a parallel or a funnel to each branch: Celery's chain(...)(x), group(...)(x).
Nested combinators give nested lists (Celery flattens a group inside a group; we keep the shape written).

A workflow runs from the client that started it: each step is a durable call on the network, and
the client passes results along (no Celery chords). Every call of a workflow carries the workflow's
root id as its tracking id, and every combinator is itself recorded as a call, so the whole workflow
is one tree in `flow ls call --graph` and in `handle.tree()`.
"""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ElasticCodeError
from ..runtime.events import FAILURE, POSTRUN, PRERUN, CallEvent, EventStream
from .calling import Callable
from .handles import CallHandle, WorkflowHandle
from .history import COMBINATOR_PROCESSOR

WORKFLOW = COMBINATOR_PROCESSOR  # the processor name combinator calls are recorded under
FINAL_STATES = ("finished", "failed", "dead")
RECORD_SECONDS = 30.0  # how long results_frame() waits for the recorder to write this run's calls


class WorkflowError(ElasticCodeError):
    """A step of a workflow failed; the message names the socket and its error."""


class Cancelled(ElasticCodeError):
    pass


@dataclass
class SentCall:
    """One socket call of a workflow, as the client sent it and got it back."""

    id: str
    socket: str
    args: tuple
    kwargs: dict
    result: Any = None
    state: str = "queued"
    error: str | None = None


class Run:
    """What the steps of one workflow share: its root id, the dispatcher, cancellation, its calls."""

    def __init__(self, dispatcher, root: str):
        self.dispatcher, self.root = dispatcher, root
        self.events = EventStream(dispatcher.redis)
        self.cancelled = threading.Event()
        self.outstanding: set[str] = set()
        self.finished = 0
        self.lock = threading.Lock()
        self.calls: dict[str, SentCall] = {}  # socket calls in the order they were sent

    def check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled(f"workflow {self.root} was cancelled")

    def node(self, name: str, parent: str | None, call_id: str | None = None):
        """Record a combinator as a call of its own (its children name it as parent)."""
        call_id = call_id or str(uuid.uuid4())
        self.dispatcher.sign_calls()  # its events are signed like its calls
        self.events.emit(CallEvent.now(call_id, PRERUN, socket=name, processor=WORKFLOW, tracking=self.root,
                                       parent=parent, user=self.dispatcher.user))
        return call_id

    def close(self, call_id: str, name: str, parent: str | None, started: float, error: str | None = None) -> None:
        self.events.emit(CallEvent.now(call_id, FAILURE if error else POSTRUN, socket=name, processor=WORKFLOW,
                                       tracking=self.root, parent=parent, user=self.dispatcher.user,
                                       duration=time.time() - started, error=error))


def _no_steps_in(values: Sequence[Any], where: str) -> None:
    if any(isinstance(v, Step) for v in values):
        raise ElasticCodeError(f"a workflow step was given as a value {where}: put steps in pipeline([...]), "
                               "parallel([...]) or funnel([...], final), or chain them with `|`")


class Step(Callable):
    """Something a workflow can run: a socket partial or a combinator."""

    def run(self, run: Run, args: tuple, kwargs: dict, parent: str | None, options: dict[str, Any],
            call_id: str | None = None) -> Any:
        """Run with `args` prepended and `kwargs` merged; `options` go to the calls this step starts with."""
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Start it with these values as input (Celery's `chain(...)(x)`); returns a handle."""
        if len(args) == 1 and isinstance(args[0], Step) and not kwargs:
            return self._given_step(args[0])
        return self.delay(*args, **kwargs)

    def _given_step(self, step: Step) -> Any:
        name = type(self).__name__.lower()
        raise ElasticCodeError(f"{name}(...)(step): calling a {name} with a value passes that value in as input; to "
                               f"run a step first, make it the first step: pipeline([step, {name}]) or step | {name}")

    def __or__(self, other: Any) -> Pipeline:
        """`a | b` is pipeline([a, b]), as Celery's `sig | sig` is a chain."""
        return Pipeline([self, other])

    def _send(self, args: tuple, kwargs: dict, options: dict[str, Any]) -> FlowRun:
        from .settings import default_dispatcher

        _no_steps_in([*args, *kwargs.values()], f"to {type(self).__name__.lower()}")
        root = str(uuid.uuid4())
        run = Run(default_dispatcher(), root)
        handle = FlowRun(run, type(self).__name__.lower())

        def target():
            try:
                handle.finish(value=self.run(run, args, kwargs, None, options, call_id=root))
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
    """A deferred call of one socket (`Socket(name=...).p("One")`, Celery's signature)."""

    def __init__(self, socket: str, args: tuple, kwargs: dict):
        _no_steps_in([*args, *kwargs.values()], f"to {socket}.p()")
        self.socket, self.args, self.kwargs = socket, args, kwargs

    def __repr__(self) -> str:
        return f"{self.socket}.p{self.args!r}"

    def _given_step(self, step: Step) -> Any:
        raise ElasticCodeError(f"{self!r}(step): to run a step first, chain them: step | {self!r}")

    def _send(self, args: tuple, kwargs: dict, options: dict[str, Any]) -> CallHandle:
        """One call now, its args after the given ones (Celery: `sig.delay(x)` runs task(x, *sig.args))."""
        from .settings import default_dispatcher

        _no_steps_in([*args, *kwargs.values()], f"to {self.socket}")
        sent = default_dispatcher().send(self.socket, (*args, *self.args), {**self.kwargs, **kwargs}, **options)
        return CallHandle(sent, self.socket)

    def run(self, run: Run, args: tuple, kwargs: dict, parent: str | None, options: dict[str, Any],
            call_id: str | None = None) -> Any:
        run.check()
        call_args, call_kwargs = (*args, *self.args), {**self.kwargs, **kwargs}
        result = run.dispatcher.send(self.socket, call_args, call_kwargs, tracking=run.root, parent=parent,
                                     call_id=call_id, **options)
        sent = SentCall(result.id, self.socket, call_args, call_kwargs)
        with run.lock:
            run.outstanding.add(result.id)
            run.calls[result.id] = sent
        try:
            sent.result, sent.state = result.get(disable_sync_subtasks=False), "finished"
            return sent.result
        except Exception as exc:  # noqa: BLE001 - named and re-raised for the whole workflow
            sent.state, sent.error = "failed", f"{exc.__class__.__name__}: {exc}"
            if isinstance(exc, (WorkflowError, Cancelled)):
                raise
            if run.cancelled.is_set():
                raise Cancelled(f"workflow {run.root} was cancelled") from None
            raise WorkflowError(f"socket {self.socket} failed (call {result.id}): {sent.error}") from None
        finally:
            with run.lock:
                run.outstanding.discard(result.id)
                run.finished += 1


class Combinator(Step):
    def __init__(self, steps: Sequence[Any]):
        if not isinstance(steps, (list, tuple)) or not steps:
            raise ElasticCodeError(f"{type(self).__name__.lower()} needs a non-empty list of steps")
        self.steps = [_as_step(s) for s in steps]

    def __repr__(self) -> str:
        return f"{type(self).__name__.lower()}({self.steps!r})"

    def run(self, run: Run, args: tuple, kwargs: dict, parent: str | None, options: dict[str, Any],
            call_id: str | None = None) -> Any:
        name = type(self).__name__.lower()
        node, started = run.node(name, parent, call_id), time.time()
        try:
            out = self.body(run, args, kwargs, node, options)
        except BaseException as exc:
            run.close(node, name, parent, started, error=f"{exc.__class__.__name__}: {exc}")
            raise
        run.close(node, name, parent, started)
        return out

    def body(self, run: Run, args: tuple, kwargs: dict, node: str, options: dict[str, Any]) -> Any:
        raise NotImplementedError


def _in_parallel(run: Run, steps: Sequence[Step], args: tuple, kwargs: dict, node: str,
                 options: dict[str, Any]) -> list[Any]:
    """Run steps at once (a thread each: they mostly wait on the network); results in order."""
    results: list[Any] = [None] * len(steps)
    errors: list[BaseException | None] = [None] * len(steps)

    def one(i: int, step: Step) -> None:
        try:
            results[i] = step.run(run, args, kwargs, node, options)
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
    def body(self, run: Run, args: tuple, kwargs: dict, node: str, options: dict[str, Any]) -> Any:
        # As in a Celery chain, call-time values and options go to the first step only.
        value = self.steps[0].run(run, args, kwargs, node, options)
        for step in self.steps[1:]:
            value = step.run(run, (value,), {}, node, {})
        return value


class Parallel(Combinator):
    def body(self, run: Run, args: tuple, kwargs: dict, node: str, options: dict[str, Any]) -> list[Any]:
        return _in_parallel(run, self.steps, args, kwargs, node, options)


class Funnel(Combinator):
    def __init__(self, steps: Sequence[Any], final: Any = None):
        super().__init__(steps)
        self.final = _as_step(final) if final is not None else None

    def _given_step(self, step: Step) -> FlowRun:
        """`_funnel(do_something("Four"))`: that step receives the list of results (Celery's chord body)."""
        return Funnel(self.steps, step).delay()

    def body(self, run: Run, args: tuple, kwargs: dict, node: str, options: dict[str, Any]) -> Any:
        results = _in_parallel(run, self.steps, args, kwargs, node, options)
        return results if self.final is None else self.final.run(run, (results,), {}, node, {})


class FlowRun(WorkflowHandle):
    """A running pipeline/parallel/funnel (`.id` is the root id all its calls carry), with its results as a frame."""

    def results_frame(self, timeout: float = RECORD_SECONDS, results: bool | str = True):
        """The run's socket calls as a tidy DataFrame, one row per call, oldest first, for groupby.

        Columns: `socket`; `args` and `kwargs` as the call got them (a step's input first, then
        its own arguments); `result` (what `.get()` of that call gave: frames and arrays as
        such; <NA> for a failed call); `state`, `error`; the timings `duration` (seconds in the
        function), `created`, `started`, `finished` (UTC); `worker`; `argument` (the argument a
        plug bound); `id`, `parent`. The combinators' own rows are left out. Calls that plugs
        started from this run's calls are included as recorded so far (args <NA>, results as in
        `history(results=...)`: over 64 KB only with `results="all"`).

        Waits up to `timeout` seconds for the run to finish and for its calls to be recorded
        (timings come from the call records the agents write); past that, a warning, and the
        rows not recorded yet have no timings. The arguments and results of the run's own calls
        come from this handle, which keeps them while it lives (nothing is loaded again for them).
        """
        import pandas as pd

        from .history import history, object_column

        if results not in (True, "all"):
            raise ElasticCodeError(f"results={results!r}: a results frame takes results=True or results='all'")
        deadline = time.monotonic() + timeout
        if not self._done.wait(timeout):
            raise ElasticCodeError(f"{self.kind} {self.id} is not finished after {timeout:g}s: wait again or cancel it")
        with self.run.lock:
            sent = dict(self.run.calls)
        settings = self._settings()
        self._wait_recorded(list(sent), deadline, settings)
        frame = history(root=self.id, results=results, settings=settings).set_index("id", drop=False)
        missing = [i for i in sent if i not in frame.index]
        frame = frame.reindex([*frame.index, *missing])
        frame["id"] = frame.index
        for i in missing:  # answered, but not recorded yet: what the client knows
            frame.loc[i, ["name", "state", "error"]] = [sent[i].socket, sent[i].state, sent[i].error]
        ids = list(frame.index)
        frame["result"] = object_column([sent[i].result if i in sent else frame.at[i, "result"] for i in ids], frame.index)
        frame["args"] = object_column([sent[i].args if i in sent else pd.NA for i in ids], frame.index)
        frame["kwargs"] = object_column([sent[i].kwargs if i in sent else pd.NA for i in ids], frame.index)
        frame = frame.rename(columns={"name": "socket"}).reset_index(drop=True)
        return frame[["socket", "args", "kwargs", "result", "state", "error", "duration", "created", "started",
                      "finished", "worker", "argument", "id", "parent"]]

    def _wait_recorded(self, ids: list[str], deadline: float, settings) -> None:
        """Wait until the recorder has closed every call of `ids`; at the deadline, warn and go on."""
        from .history import history

        pause = 0.02
        while True:
            frame = history(root=self.id, settings=settings)
            closed = set(frame["id"][frame["state"].isin(FINAL_STATES)])
            waiting = [i for i in ids if i not in closed]
            if not waiting:
                return
            if time.monotonic() + pause > deadline:
                warnings.warn(f"{len(waiting)} calls of {self.kind} {self.id} are not recorded yet (is an agent "
                              "running? its recorder writes them): their timings are missing", stacklevel=3)
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.25)


def pipeline(steps: Sequence[Any]) -> Pipeline:
    """Steps in order, each result the input of the next (Celery's chain)."""
    return Pipeline(steps)


def parallel(steps: Sequence[Any]) -> Parallel:
    """Steps at once, each with the same input; their results in declaration order (Celery's group)."""
    return Parallel(steps)


def funnel(steps: Sequence[Any], final: Any = None) -> Funnel:
    """Steps at once, the list of their results to `final`, or to the step the funnel is called with (Celery's chord)."""
    return Funnel(steps, final)
