"""Reconcile: make the workers of this node what the model database says (desired state -> workers).

Runs on a network change (NOTIFY, or `wake`) and at least every FULL_EVERY seconds; in the
same transaction it publishes the routes, starts, restarts and stops workers, writes processor,
socket and worker statuses, and publishes the routes again with them. Every processor placed on
this node is deployed, its code prepared and checked, whatever else runs here: a bad repository,
commit, module or function is an error at once, never "pending". How many of its pool processes
may be busy is the scaling step's business (`scaling.py`), not a condition for running.

What a change costs (`WorkerSpec.restart_fingerprint` / `live_fingerprint`): new sockets or a new
pool range are written to the running worker's spec file and applied by it without a restart
(`elasticcode.runtime.live`); new code is a rolling restart, once the processor's settings have
not changed for SETTLE seconds (a burst of changes gives one): the new worker starts beside the
old one, which stops warmly once the new one consumes (`settle`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from elasticcode.db import model as m
from elasticcode.db.engine import session_scope
from elasticcode.errors import ElasticCodeError
from elasticcode.runtime import live, naming
from elasticcode.runtime.app import make_app
from elasticcode.runtime.workerspec import WorkerSpec

from .codeprep import CodePreparer, worker_spec
from .context import AgentContext
from .modcheck import ModuleReport
from .placement import STOPPED, load_processors, place
from .publishing import Publisher
from .rows import record_worker, set_status
from .scaling import Scaling
from .steps import Step
from .supervisor import WorkerProcess

log = logging.getLogger("elasticcode.agent")
FULL_EVERY = 10.0  # seconds: reconcile even without a notification (one may have been missed)
SETTLE = 1.0  # seconds a processor's settings must stay unchanged before its worker restarts on them
SETTLE_MAX = 15.0  # ...unless they keep changing for this long: then it restarts on the latest
READY_TIMEOUT = 60.0  # seconds a rolling restart waits for the new worker to consume before stopping the old
REFRESH_EVERY = 1.0  # seconds between tries to tell a worker its new sockets
NOT_CONSUMING_AFTER = 30.0  # seconds a started worker may take to consume before its status says why not


class Reconciler(Step):
    def __init__(self, ctx: AgentContext, code: CodePreparer, publisher: Publisher, scaling: Scaling | None = None):
        self.ctx, self.code, self.publisher, self.scaling = ctx, code, publisher, scaling
        self.last_full = 0.0
        self.due: float | None = None  # reconcile again then (a restart waiting for the settings to settle)
        self.settling: dict[str, tuple[str, float, float]] = {}  # proc id -> (wanted key, since, first seen)
        self._refreshed: dict[str, float] = {}  # proc id -> when its worker was last told its spec changed
        self._consumed: set[int] = set()  # pids of workers seen consuming
        self._app: Celery | None = None

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = make_app(self.ctx.broker, self.ctx.backend)
        return self._app

    def tick(self, now: float) -> None:
        if self.ctx.wake.is_set() or now - self.last_full > FULL_EVERY or (self.due is not None and now >= self.due):
            self.ctx.wake.clear()
            self.due = None
            self.reconcile()
            self.last_full = now
        self.settle(now)

    def degraded(self) -> None:
        self.settle(time.monotonic())  # no database needed

    def close(self) -> None:
        if self._app is not None:
            self._app.close()

    def reconcile(self) -> None:
        workers = self.ctx.workers
        with session_scope(self.ctx.db_url) as s:
            self.publisher.publish(s)  # new plugs first: preparing code below may take a while
            wanted = set()
            for proc in place(load_processors(s), self.ctx.hostname):
                wanted.add(proc.id)
                try:
                    self.ensure_worker(s, proc)
                except SQLAlchemyError:
                    raise  # the database: the whole turn is retried
                except Exception as exc:  # noqa: BLE001 - one processor's problem never holds back the others
                    log.exception("%s: could not deploy", proc.name)
                    workers.stop(proc.id)
                    set_status(proc, "error", str(exc) or type(exc).__name__)
            for proc_id, _ in workers.items():
                if proc_id not in wanted:
                    proc = s.get(m.Processor, proc_id)
                    self.settling.pop(proc_id, None)
                    workers.stop(proc_id)
                    if proc is not None:
                        set_status(proc, proc.requested_status if proc.requested_status in STOPPED else "stopped", None)
            # Again with this pass's statuses, before they commit: whoever sees a status in the
            # database finds it in the routes too (a call to a stopped processor warns at once).
            self.publisher.publish(s)

    def ensure_worker(self, s: Session, proc: m.Processor) -> None:
        """Run the processor's worker on its current code and sockets, or say in its status why not."""
        workers = self.ctx.workers
        sockets = [sock for sock in proc.sockets if sock.enabled]
        if not sockets:
            workers.stop(proc.id)
            set_status(proc, "idle", "no sockets yet: add one with `flow add socket -pn " + proc.name + "`")
            return
        try:
            prepared = self.code.prepare(proc)
            report = self.code.check(prepared, proc.module, sorted({x.task.function for x in sockets}))
        except ElasticCodeError as exc:
            workers.stop(proc.id)
            set_status(proc, "error", str(exc))
            return
        check_plug_arguments(s, sockets, report)
        problems = {fn: f"function {fn!r} {problem}: fix the socket's -t/--task or the code"
                    for fn, problem in report.problems.items()}
        for sock in sockets:
            problem = problems.get(sock.task.function)
            sock.status, sock.status_message = ("error", problem) if problem else ("ready", None)
        runnable = [sock for sock in sockets if sock.task.function not in problems]
        if not runnable:
            workers.stop(proc.id)
            set_status(proc, "error", next(iter(problems.values())))
            return
        call_key = s.execute(select(func.elasticcode_call_key_of(proc.owner))).scalar()  # None: no RUN_TASK
        spec = worker_spec(proc, prepared, runnable, self.ctx.broker, self.ctx.backend, self.ctx.hostname,
                           steered=self.scaling is not None, call_key=call_key)
        current = workers.get(proc.id)
        if current is None:
            current = WorkerProcess(spec, prepared.python, self.ctx.home / "workers")
            workers.add(proc.id, current)
            current.start()
            record_worker(s, self.ctx, proc, current, prepared.commit)
        elif current.needs_restart(spec, prepared.python):
            if not current.alive() or self.settled(proc.id, spec, prepared.python):
                self.settling.pop(proc.id, None)
                successor = WorkerProcess(spec, prepared.python, self.ctx.home / "workers")
                workers.roll(proc.id, successor)
                log.info("%s: rolling restart on new code (commit %s): worker %s started, worker %s stops once "
                         "it consumes", proc.name, prepared.commit[:12], successor.pid, current.pid)
                record_worker(s, self.ctx, proc, successor, prepared.commit)
        else:
            self.settling.pop(proc.id, None)
            if current.spec != spec:
                current.update(spec)
                log.info("%s: sockets or pool range changed; the running worker %s takes them (%d sockets)",
                         proc.name, current.pid, len(spec.sockets))
                if current.alive():
                    self.refresh(proc.id, current)  # confirmed now, or tried again by `settle`
                record_worker(s, self.ctx, proc, current, prepared.commit)
        set_status(proc, "running", self.stalled(workers.get(proc.id))
                   or (self.scaling.message(proc.id) if self.scaling else None))

    def stalled(self, worker: WorkerProcess | None) -> str | None:
        """Why a worker that runs has not started consuming after NOT_CONSUMING_AFTER seconds (it
        cannot reach the broker, say), from its log, or None. Celery retries such a connection
        quietly in the worker's own log; without this the processor would just read `running`."""
        if worker is None or worker.pid in self._consumed or not worker.alive():
            return None
        if time.monotonic() - worker.started_at < NOT_CONSUMING_AFTER:
            return None
        if self.consuming(worker) is not None:
            self._consumed.add(worker.pid)  # once is enough: its mark expires after a day
            return None
        cause = last_error_line(worker.log_path)
        return (f"worker {worker.pid} has not consumed its queues for {time.monotonic() - worker.started_at:.0f} s"
                f"{': ' + cause if cause else ''} (its log: {worker.log_path})")

    def settled(self, proc_id: str, spec: WorkerSpec, python: Path) -> bool:
        """Whether the processor's settings have not changed for SETTLE seconds (or kept changing for
        SETTLE_MAX); if not, reconcile again when they may have."""
        key, now = spec.fingerprint() + str(python), time.monotonic()
        seen = self.settling.get(proc_id)
        if seen is None or seen[0] != key:
            seen = self.settling[proc_id] = (key, now, seen[2] if seen else now)
        _, since, first = seen
        if now - since >= SETTLE or now - first >= SETTLE_MAX:
            return True
        due = min(since + SETTLE, first + SETTLE_MAX)
        self.due = due if self.due is None else min(self.due, due)
        return False

    def refresh(self, proc_id: str, worker: WorkerProcess) -> bool:
        """Tell the running worker its spec file changed; True once it says it serves that."""
        self._refreshed[proc_id] = time.monotonic()
        name = naming.worker_name(worker.processor, self.ctx.hostname)
        try:
            answer = live.refresh(self.app, name, worker.pid, self.ctx.workers.processes(proc_id))
        except Exception as exc:  # noqa: BLE001 - the broker may be away: tried again
            log.warning("%s: could not reach worker %s: %s", worker.processor, worker.pid, exc)
            return False
        if answer and answer.get("applied") and answer.get("live") == worker.spec.live_fingerprint():
            worker.applied_live = answer["live"]
            return True
        return False

    def settle(self, now: float) -> None:
        """Rolling restarts: a replaced worker stops warmly once its successor consumes (or is no longer
        the processor's worker, or after READY_TIMEOUT), and is reaped. Workers that have not confirmed
        their new sockets are told again, once they consume."""
        workers = self.ctx.workers
        for retiring in list(workers.retiring):
            old, new = retiring.worker, retiring.successor
            if old.stop_deadline is None:
                if (workers.get(retiring.proc_id) is not new or now - retiring.since > READY_TIMEOUT
                        or self.consuming(new) is not None):
                    log.info("%s: worker %s consumes; worker %s stops (running calls finish)",
                             old.processor, new.pid, old.pid)
                    old.begin_stop(self.ctx.stop_timeout)
            elif old.reap():
                workers.finish(retiring)
                log.info("%s: worker %s stopped after %.1f s", old.processor, old.pid, now - retiring.since)
        for proc_id, worker in workers.items():
            if not worker.live_pending or now - self._refreshed.get(proc_id, 0.0) < REFRESH_EVERY:
                continue
            state = self.consuming(worker)
            if state is None:
                continue  # still starting: it reads its spec file when it starts consuming
            if state.get("live") == worker.spec.live_fingerprint():
                worker.applied_live = state["live"]
            else:
                self.refresh(proc_id, worker)

    def consuming(self, worker: WorkerProcess) -> dict | None:
        """What the worker process said once it consumed (None: not yet, or not alive)."""
        if not worker.alive():
            return None
        try:
            return live.ready(self.ctx.redis, naming.worker_name(worker.processor, self.ctx.hostname), worker.pid)
        except Exception:  # noqa: BLE001 - Redis away: not known to consume
            return None


def last_error_line(log: Path, tail: int = 8192) -> str | None:
    """The last ERROR line of a worker's log (Celery's `consumer: Cannot connect to ...`), shortened."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - tail))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if "ERROR" in line:
            return line.split("] ", 1)[-1].strip()[:300]
    return None


def check_plug_arguments(s: Session, sockets: list[m.Socket], report: ModuleReport) -> None:
    """A plug that binds an argument its target function does not take is an error, at once
    (its calls would fail with a TypeError); the route builder leaves errored plugs out."""
    by_id = {sock.id: sock for sock in sockets}
    for plug in s.execute(select(m.Plug).where(m.Plug.target_id.in_(list(by_id)), m.Plug.argument.is_not(None))).scalars():
        function = by_id[plug.target_id].task.function
        if report.lacks(function, plug.argument):
            names = ", ".join(report.params[function]["names"])
            plug.status, plug.status_message = "error", (
                f"binds argument {plug.argument!r}, but {function}({names}) has no such parameter: "
                f"fix the plug's -a/--argument (flow update plug -n {plug.name} -a ...) or the function")
        elif plug.status == "error":
            plug.status, plug.status_message = "ready", None
