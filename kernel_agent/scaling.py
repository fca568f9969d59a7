"""Scaling: the node's CPUs are the budget of *busy* pool processes across all its processors.

Every processor placed here runs a worker (placement reserves nothing). Each worker runs
Celery's own autoscaler between the processor's minimum and maximum (`--min`, `-c`); this step,
in its own thread, shares the CPUs among them twice a second:

- it reads each processor's demand: calls waiting in its broker queues (Redis `LLEN`) plus the
  calls its worker holds and runs (the worker's `ec_pool` inspect command, one broadcast with
  replies for all workers of the node);
- it gives each processor its minimum, then the remaining cores one at a time to the processor
  with work and the fewest cores so far (a fair share: every backlogged processor gets a core
  whenever there are as many cores as backlogged processors), then one core of headroom to idle
  processors while cores are left, so that their first call starts at once;
- it sets each worker's autoscale maximum to that share (Celery's `autoscale` remote control
  command, to that worker only) whenever it differs from what the worker reported.

The worker's prefetch count follows its maximum (late acks, multiplier 1), so the sum of the
maxima bounds the busy processes as soon as calls running under a larger share end; no call is
interrupted. Minima are kept even when they add up to more than the CPUs (the user asked for them).
A processor with work that gets less than its maximum says so in its status message.

Once a second it publishes what it saw and decided (`elasticcode.runtime.metrics`): per processor
its queue depth, busy and pool processes, range and share, calls finished per second and the last
change of its share with the reason. Finished calls come from each worker's own counter (Celery's
`stats` remote control command, one broadcast a second: accepted calls minus running ones), so
nothing is added to the path of a call.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import update

from elasticcode.db import model as m
from elasticcode.db.engine import session_scope
from elasticcode.runtime import naming
from elasticcode.runtime.app import is_redis, make_app
from elasticcode.runtime.connections import redis_client
from elasticcode.runtime.metrics import PUBLISH_EVERY, MetricsPublisher, NodeMetrics, ProcessorMetrics, decision_text

from .context import AgentContext
from .steps import Step

log = logging.getLogger("elasticcode.agent")
SCALE_EVERY = 0.5  # seconds between two scaling decisions
REPLY_TIMEOUT = 0.5  # seconds to wait for the workers' pool reports
SLICE = 5.0  # seconds a processor keeps a contended core before another backlogged one may take it
MESSAGE_EVERY = 2.0  # seconds between two status-message writes for one processor


@dataclass
class Demand:
    """One processor's worker on this node, as the scaling step sees it in one turn."""

    key: str  # processor id
    low: int  # its minimum
    high: int  # its maximum
    busy: int = 0  # calls running
    waiting: int = 0  # calls in its queues or held by its worker, not running yet

    @property
    def wants(self) -> int:
        return min(self.high, self.busy + self.waiting)


def share(demands: list[Demand], cpus: int, order: dict[str, float] | None = None,
          keep: dict[str, int] | None = None) -> dict[str, int]:
    """Each processor's autoscale maximum: minima first, then a fair share of the cores left among the
    processors with work (lowest share first; ties go to `order`, lowest first), then what is left:
    first to idle processors to keep the processes they have (`keep`, until their cool-down ends;
    the most recently busy first), then one core of headroom each to those without a share."""
    order, keep = order or {}, keep or {}
    caps = {d.key: min(d.low, d.high) for d in demands}
    budget = cpus - sum(caps.values())
    while budget > 0:
        hungry = [d for d in demands if d.wants > caps[d.key]]
        if not hungry:
            break
        chosen = min(hungry, key=lambda d: (caps[d.key], order.get(d.key, 0.0), d.key))
        caps[chosen.key] += 1
        budget -= 1
    for d in sorted(demands, key=lambda d: (-order.get(d.key, 0.0), d.key)):
        kept = min(keep.get(d.key, 0), d.high, caps[d.key] + max(budget, 0))
        if kept > caps[d.key]:
            budget -= kept - caps[d.key]
            caps[d.key] = kept
    for d in sorted(demands, key=lambda d: (order.get(d.key, 0.0), d.key)):
        if budget <= 0:
            break
        if caps[d.key] == 0 and d.high > 0:
            caps[d.key] = 1
            budget -= 1
    return caps


def reason(d: Demand, old: int, new: int, demands: list[Demand], cpus: int) -> str:
    """Why a processor's share moved from `old` to `new` (the figures of the turn that moved it)."""
    if new > old:
        if d.waiting:
            return f"backlog {d.waiting}"
        return f"{d.busy} running" if d.busy else "headroom for a first call"
    if not d.wants:
        return "idle"
    with_work = sum(1 for x in demands if x.wants)
    return f"node busy: {with_work} processors with work on {cpus} cpus"


@dataclass
class Counted:
    """Finished calls of one processor's worker, from its own counters."""

    pid: int | None = None  # the worker process the counters belong to (a new one starts at 0)
    done: int = 0  # calls it finished (accepted minus running)
    finished: int = 0  # calls finished on this node since the agent started
    at: float = 0.0  # when `done` was read (monotonic)
    rate: float = 0.0  # calls per second over the last interval


def status_message(demand: Demand, cap: int, hostname: str) -> str | None:
    """What a processor that runs but is held below its maximum says; None when it is not held back."""
    if cap >= demand.wants or cap >= demand.high:
        return None
    return f"running: {cap} of max {demand.high} processes (node {hostname} busy)"


class Scaling(Step):
    def __init__(self, ctx: AgentContext):
        self.ctx = ctx
        self.messages: dict[str, str | None] = {}  # processor id -> its current status message
        self.caps: dict[str, int] = {}  # processor id -> the maximum it was given
        self.reports: dict[str, dict] = {}  # processor id -> its worker's last pool report
        self._granted: dict[str, float] = {}  # processor id -> when its share last rose from 0
        self._held: dict[str, float] = {}  # processor id -> when it last had a share
        self._written: dict[str, tuple[str | None, float]] = {}
        self._thread: threading.Thread | None = None
        self._app = None
        self._broker_redis = None
        self._last_error = 0.0
        self.metrics: MetricsPublisher | None = None
        self.decisions: dict[str, tuple[str, float]] = {}  # processor id -> its last decision, when (epoch)
        self._counted: dict[str, Counted] = {}
        self._published = 0.0  # monotonic time of the last publication
        self._publish_error = 0.0

    # -- the reconciler asks ----------------------------------------------------------------------
    def message(self, proc_id: str) -> str | None:
        return self.messages.get(proc_id)

    # -- the thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._app = make_app(self.ctx.broker)
        self._broker_redis = redis_client(self.ctx.broker) if is_redis(self.ctx.broker) else None
        self.metrics = MetricsPublisher(self.ctx.redis)
        self._thread = threading.Thread(target=self._run, name="ec-scaling", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(5)
        if self.metrics is not None:
            try:
                self.metrics.withdraw(self.ctx.hostname)
            except Exception:  # noqa: BLE001 - Redis may be away: the latest record expires by itself
                pass

    def _run(self) -> None:
        while not self.ctx.stop_event.wait(SCALE_EVERY):
            try:
                self.turn()
            except Exception as exc:  # noqa: BLE001 - the broker may be away: keep the last shares
                now = time.monotonic()
                if now - self._last_error > 30:
                    self._last_error = now
                    log.warning("scaling: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def turn(self) -> None:
        workers = [(proc_id, worker) for proc_id, worker in self.ctx.workers.items() if worker.alive()]
        if not workers:
            self._publish([], {}, [], {}, {}, time.monotonic())
            return
        names = {proc_id: naming.worker_name(worker.processor, self.ctx.hostname) for proc_id, worker in workers}
        queued = self._queued([worker.spec.queues for _, worker in workers])
        reports = self._reports(list(names.values()))
        demands = []
        for (proc_id, worker), waiting in zip(workers, queued, strict=True):
            spec, report = worker.spec, reports.get(names[proc_id]) or {}
            active = int(report.get("active") or 0)
            held = max(0, int(report.get("reserved") or 0) - active)
            demands.append(Demand(proc_id, min(spec.min_concurrency, spec.concurrency), spec.concurrency,
                                  busy=active, waiting=waiting + held))
        now = time.monotonic()
        order = {d.key: self._order(d, now) for d in demands}
        keep = {proc_id: min(int((reports.get(names[proc_id]) or {}).get("processes") or 0), self.caps.get(proc_id, 0))
                for proc_id, _ in workers}
        caps = share(demands, self.ctx.cpus, order, keep)
        self._decide(demands, caps, {proc_id: worker.spec for proc_id, worker in workers})
        for d in demands:
            if caps[d.key] > 0 and (self.caps.get(d.key, 0) == 0 or d.key not in self._granted):
                self._granted[d.key] = now
            if caps[d.key] > 0:
                self._held[d.key] = now
        self.caps = caps
        self.reports = {proc_id: reports.get(names[proc_id]) or {} for proc_id, _ in workers}
        for proc_id, _ in workers:
            report = reports.get(names[proc_id])
            if report is not None and report.get("max") != caps[proc_id]:
                self._app.control.broadcast("autoscale", arguments={"max": caps[proc_id], "min": None},
                                            destination=[names[proc_id]], reply=False)
        self._publish(workers, names, demands, caps, reports, now)
        self._messages({d.key: status_message(d, caps[d.key], self.ctx.hostname) for d in demands}, now)

    # -- the published figures -----------------------------------------------------------------------
    def _decide(self, demands: list[Demand], caps: dict[str, int], specs: dict) -> None:
        """Remember each change of a share, with its reason (a worker starts at its minimum)."""
        for d in demands:
            old = self.caps.get(d.key, min(specs[d.key].min_concurrency, specs[d.key].concurrency))
            if caps[d.key] != old:
                self.decisions[d.key] = (decision_text(old, caps[d.key], reason(d, old, caps[d.key], demands, self.ctx.cpus)),
                                         time.time())
        for key in set(self.decisions) - set(caps):
            del self.decisions[key]

    def _publish(self, workers: list, names: dict[str, str], demands: list[Demand], caps: dict[str, int],
                 reports: dict[str, dict], now: float) -> None:
        """Once every PUBLISH_EVERY seconds, this node's record; a failure is logged (at most every 30 s)
        and never stops the scaling."""
        if self.metrics is None or now - self._published < PUBLISH_EVERY:
            return
        self._published = now
        try:
            self._count(names, reports)
            by_key = {d.key: d for d in demands}
            rows = []
            for proc_id, worker in workers:
                d, report, counted = by_key[proc_id], reports.get(names[proc_id]) or {}, self._counted.get(proc_id, Counted())
                decision, decided = self.decisions.get(proc_id, (None, None))
                rows.append(ProcessorMetrics(
                    processor=worker.processor, processor_id=proc_id, queue=d.waiting, busy=d.busy,
                    pool=int(report.get("processes") or 0), min=d.low, max=d.high, share=caps[proc_id],
                    calls_per_s=round(counted.rate, 2), finished=counted.finished, decision=decision, decided=decided))
            rows.sort(key=lambda r: r.processor)
            self.metrics.publish(NodeMetrics(self.ctx.hostname, self.ctx.cpus, time.time(), tuple(rows)))
        except Exception as exc:  # noqa: BLE001 - Redis may be away: the next second tries again
            if now - self._publish_error > 30:
                self._publish_error = now
                log.warning("scaling: publishing figures: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def _count(self, names: dict[str, str], reports: dict[str, dict]) -> None:
        """Finished calls per worker: what it accepted (its `stats` counters) minus what it runs now."""
        for key in set(self._counted) - set(names):
            del self._counted[key]
        if not names:
            return
        replies = self._app.control.broadcast("stats", destination=list(names.values()), reply=True,
                                              timeout=REPLY_TIMEOUT, limit=len(names)) or []
        stats = {name: body for reply in replies for name, body in reply.items() if isinstance(body, dict)}
        now = time.monotonic()
        for proc_id, name in names.items():
            body, report = stats.get(name), reports.get(name)
            if body is None or report is None or not isinstance(body.get("total"), dict):
                continue  # no answer this time: the next one counts these calls too
            done = max(0, sum(int(v) for v in body["total"].values()) - int(report.get("active") or 0))
            counted = self._counted.setdefault(proc_id, Counted(at=now - PUBLISH_EVERY))
            if counted.pid != body.get("pid"):  # a new worker process: its counters start at 0
                counted.pid, counted.done = body.get("pid"), 0
            new = max(0, done - counted.done)
            counted.rate = new / max(now - counted.at, 1e-3)
            counted.done, counted.finished, counted.at = max(counted.done, done), counted.finished + new, now

    def _order(self, d: Demand, now: float) -> float:
        """Tie-break among processors with equal shares: one that got its core less than SLICE ago keeps
        it, one that has held it longer goes last, and among the others the one that waited longest first."""
        if self.caps.get(d.key, 0) > 0 and d.wants > 0:
            return -1.0 if now - self._granted.get(d.key, now) < SLICE else now
        return self._held.get(d.key, 0.0)

    def _queued(self, queues: list[list[str]]) -> list[int]:
        """Messages waiting in each worker's broker queues (Redis only; RabbitMQ: what the worker holds)."""
        if self._broker_redis is None:
            return [0] * len(queues)
        pipe = self._broker_redis.pipeline(transaction=False)
        for names in queues:
            for name in names:
                pipe.llen(name)
        lengths = iter(pipe.execute())
        return [sum(next(lengths) for _ in names) for names in queues]

    def _reports(self, names: list[str]) -> dict[str, dict]:
        replies = self._app.control.broadcast("ec_pool", destination=names, reply=True, timeout=REPLY_TIMEOUT,
                                              limit=len(names)) or []
        out = {}
        for reply in replies:
            for name, body in reply.items():
                if isinstance(body, dict) and "error" not in body:
                    out[name] = body
        return out

    def _messages(self, messages: dict[str, str | None], now: float) -> None:
        """Keep the messages for the reconciler and write the changed ones (at most every MESSAGE_EVERY s)."""
        self.messages = messages
        due = {k: v for k, v in messages.items()
               if self._written.get(k, (None, 0.0))[0] != v and now - self._written.get(k, (None, 0.0))[1] > MESSAGE_EVERY}
        if not due:
            return
        with session_scope(self.ctx.db_url) as s:
            for proc_id, text in due.items():
                # Only a running processor's message, and without touching lastupdated (code settings' key).
                s.execute(update(m.Processor)
                          .where(m.Processor.id == proc_id, m.Processor.status == "running",
                                 m.Processor.status_message.is_distinct_from(text))
                          .values(status_message=text, lastupdated=m.Processor.lastupdated))
        for proc_id, text in due.items():
            self._written[proc_id] = (text, now)
