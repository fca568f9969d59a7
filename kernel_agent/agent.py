"""The node agent: makes this node run what the model database says should run here.

It registers the node and itself, LISTENs for network changes (reacting within a second, no
polling), places processors at scale (the sum of concurrency never exceeds the CPUs), keeps
one worker process per processor alive, publishes the topology for workers, heartbeats, and
runs the provenance recorder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import select
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session, selectinload

from elasticcode.config import Settings
from elasticcode.db import model as m
from elasticcode.db.engine import get_engine, session_scope
from elasticcode.errors import ElasticCodeError
from elasticcode.runtime import naming
from elasticcode.runtime.coord import coordination_url, publish_topology, redis_client
from elasticcode.security import redact_url

from . import nodeinfo, topology
from .code import CodeCache, CodeSpec
from .recorder import Recorder
from .supervisor import EXIT_BAD_CODE, WorkerProcess

log = logging.getLogger("elasticcode.agent")
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
STOPPED = ("stopped", "paused")


@dataclass
class Placement:
    processor: m.Processor
    fits: bool
    reason: str | None = None


class Agent:
    def __init__(self, settings: Settings, home: Path, hostname: str | None = None, cpus: int | None = None,
                 heartbeat: float = 5.0, stop_timeout: float = 30.0):
        self.settings = settings
        self.db_url = settings.admin_url or settings.require_db()
        self.broker = settings.require_broker()
        self.backend = settings.backend
        self.home = home
        self.hostname = hostname or nodeinfo.hostname()
        self.cpus = cpus or nodeinfo.cpu_count()
        self.heartbeat_every, self.stop_timeout = heartbeat, stop_timeout
        self.redis = redis_client(coordination_url(self.broker, self.backend))
        self.code = CodeCache(home, settings.repositories)
        self.workers: dict[str, WorkerProcess] = {}
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.agent_id: str | None = None
        self.node_id: str | None = None
        self._published = ""
        self._prepared: dict[str, tuple[str, object]] = {}  # processor id -> (spec key, PreparedCode)
        self._checked: dict[tuple, dict[str, str]] = {}

    # -- registration and heartbeat ---------------------------------------------------------

    def register(self) -> None:
        stats = nodeinfo.stats(str(self.home))
        stats["cpus"] = self.cpus
        with session_scope(self.db_url) as s:
            node = s.execute(sql_select(m.Node).where(m.Node.name == self.hostname)).scalar()
            if node is None:
                node = m.Node(name=self.hostname, hostname=self.hostname)
                s.add(node)
            for key, value in stats.items():
                setattr(node, key, value)
            node.status = "running"
            s.flush()
            agent = s.execute(sql_select(m.Agent).where(m.Agent.name == self.hostname)).scalar()
            if agent is None:
                agent = m.Agent(name=self.hostname, hostname=self.hostname, node_id=node.id)
                s.add(agent)
            agent.pid, agent.cpus, agent.status = os.getpid(), self.cpus, "running"
            agent.heartbeat = datetime.now(timezone.utc)
            s.flush()
            self.agent_id, self.node_id = agent.id, node.id

    def beat(self) -> None:
        stats = nodeinfo.stats(str(self.home))
        with session_scope(self.db_url) as s:
            node = s.get(m.Node, self.node_id)
            agent = s.get(m.Agent, self.agent_id)
            if node is None or agent is None:  # deleted from under us: register again
                self.register()
                return
            for key in ("freemem", "diskfree", "cpuload"):
                setattr(node, key, stats[key])
            agent.heartbeat = datetime.now(timezone.utc)
            for worker in s.execute(sql_select(m.Worker).where(m.Worker.agent_id == self.agent_id)).scalars():
                running = self.workers.get(worker.processor_id)
                worker.status = "running" if running and running.alive() else "stopped"

    # -- placement --------------------------------------------------------------------------

    def _mine(self, proc: m.Processor) -> bool:
        return not proc.hostname or proc.hostname == self.hostname or proc.hostname in LOCAL_NAMES

    def place(self, session: Session) -> list[Placement]:
        """At scale: processors placed here run while their concurrency fits in the CPUs left."""
        processors = session.execute(
            sql_select(m.Processor).options(selectinload(m.Processor.sockets).selectinload(m.Socket.queue),
                                            selectinload(m.Processor.sockets).selectinload(m.Socket.task))
            .order_by(m.Processor.created, m.Processor.name)
        ).scalars().all()
        free, out = self.cpus, []
        for proc in processors:
            if not self._mine(proc) or proc.requested_status in STOPPED or not proc.enabled:
                continue
            if proc.concurrency > free:
                reason = (f"pending: needs {proc.concurrency} CPUs, node {self.hostname} has {free} free of {self.cpus}"
                          + (" (lower -c/--concurrency)" if proc.concurrency > self.cpus else ""))
                out.append(Placement(proc, False, reason))
                continue
            free -= proc.concurrency
            out.append(Placement(proc, True))
        return out

    # -- reconcile --------------------------------------------------------------------------

    def _code_spec(self, proc: m.Processor) -> CodeSpec:
        return CodeSpec(gitrepo=proc.gitrepo, branch=proc.branch, commit=proc.commit, tag=proc.gittag,
                        requirements=proc.requirements, modulepath=proc.modulepath)

    def _prepare(self, proc: m.Processor):
        key = json.dumps([proc.gitrepo, proc.branch, proc.commit, proc.gittag, proc.requirements, proc.modulepath,
                          str(proc.lastupdated)])
        cached = self._prepared.get(proc.id)
        if cached and cached[0] == key:
            return cached[1]
        prepared = self.code.prepare(self._code_spec(proc), progress=lambda msg: log.info("%s: %s", proc.name, msg))
        self._prepared[proc.id] = (key, prepared)
        return prepared

    def _check(self, prepared, module: str, functions: list[str]) -> dict[str, str]:
        """Which functions the module lacks; cached, since it starts a python process in the venv."""
        key = (prepared.commit, str(prepared.import_path), str(prepared.python), module, tuple(functions))
        if key not in self._checked:
            self._checked[key] = self.code.check_module(prepared, module, functions)
        return self._checked[key]

    def _worker_spec(self, proc: m.Processor, prepared, sockets: list[m.Socket]) -> dict:
        return {
            "processor": proc.name,
            "module": proc.module,
            "import_path": str(prepared.import_path),
            "commit": prepared.commit,
            "concurrency": proc.concurrency,
            "broker": self.broker,
            "backend": self.backend,
            "sockets": [{"name": s.name, "function": s.task.function, "task": naming.task_name(s.name),
                         "queue": naming.broker_queue(s.queue.name, proc.name)} for s in sockets],
        }

    def reconcile(self) -> None:
        with session_scope(self.db_url) as s:
            self._publish(s)
            placements = self.place(s)
            wanted = set()
            for placement in placements:
                proc = placement.processor
                if not placement.fits:
                    self._set_status(proc, "pending", placement.reason)
                    self._stop_worker(proc.id)
                    continue
                wanted.add(proc.id)
                self._ensure_worker(s, proc)
            for proc_id in list(self.workers):
                if proc_id not in wanted:
                    proc = s.get(m.Processor, proc_id)
                    self._stop_worker(proc_id)
                    if proc is not None:
                        self._set_status(proc, proc.requested_status if proc.requested_status in STOPPED else "stopped", None)

    def _ensure_worker(self, s: Session, proc: m.Processor) -> None:
        sockets = [sock for sock in proc.sockets if sock.enabled]
        if not sockets:
            self._stop_worker(proc.id)
            self._set_status(proc, "idle", "no sockets yet: add one with `flow add socket -pn " + proc.name + "`")
            return
        try:
            prepared = self._prepare(proc)
            problems = self._check(prepared, proc.module, sorted({x.task.function for x in sockets}))
        except ElasticCodeError as exc:
            self._stop_worker(proc.id)
            self._set_status(proc, "error", str(exc))
            return
        problems = {fn: f"function {fn!r} {problem}: fix the socket's -t/--task or the code" for fn, problem in problems.items()}
        for sock in sockets:
            problem = problems.get(sock.task.function)
            sock.status, sock.status_message = ("error", problem) if problem else ("ready", None)
        runnable = [sock for sock in sockets if sock.task.function not in problems]
        if not runnable:
            self._stop_worker(proc.id)
            self._set_status(proc, "error", next(iter(problems.values())))
            return
        spec = self._worker_spec(proc, prepared, runnable)
        fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        current = self.workers.get(proc.id)
        if current and current.fingerprint != fingerprint:
            log.info("%s: restarting on new code or sockets (commit %s)", proc.name, prepared.commit[:12])
            current.stop(self.stop_timeout)
            current = None
        if current is None:
            current = WorkerProcess(proc.name, spec, prepared.python, self.home / "workers", fingerprint)
            self.workers[proc.id] = current
            current.start()
            self._record_worker(s, proc, current, prepared.commit)
        self._set_status(proc, "running", None)

    def _record_worker(self, s: Session, proc: m.Processor, worker: WorkerProcess, commit: str) -> None:
        name = f"{proc.name}@{self.hostname}"
        row = s.execute(sql_select(m.Worker).where(m.Worker.name == name, m.Worker.processor_id == proc.id)).scalar()
        if row is None:
            row = m.Worker(name=name, processor_id=proc.id, owner=proc.owner)
            s.add(row)
        row.agent_id, row.hostname, row.process, row.concurrency = self.agent_id, self.hostname, worker.pid, proc.concurrency
        row.commit, row.status, row.workerdir = commit, "running", str(worker.run_dir)
        row.broker, row.backend = redact_url(self.broker) or None, redact_url(self.backend) or None

    def _set_status(self, proc: m.Processor, status: str, message: str | None) -> None:
        if proc.status != status or proc.status_message != message:
            proc.status, proc.status_message = status, message

    def _stop_worker(self, proc_id: str) -> None:
        worker = self.workers.pop(proc_id, None)
        if worker is not None:
            worker.stop(self.stop_timeout)

    def _publish(self, s: Session) -> None:
        data = topology.build(s)
        encoded = json.dumps(data, sort_keys=True)
        if encoded != self._published or not self.redis.exists(naming.TOPOLOGY_KEY):
            publish_topology(self.redis, data)
            self._published = encoded

    def supervise(self) -> None:
        """Restart workers that died; a worker that cannot load its code is an error, not a loop."""
        for proc_id, worker in list(self.workers.items()):
            if worker.alive():
                continue
            code = worker.exit_code()
            if code == EXIT_BAD_CODE:
                with session_scope(self.db_url) as s:
                    proc = s.get(m.Processor, proc_id)
                    if proc is not None:
                        self._set_status(proc, "error", worker.last_error())
                self.workers.pop(proc_id)
                continue
            if worker.restart_if_due():
                log.warning("%s: worker exited with %s; restarted", worker.processor, code)
                with session_scope(self.db_url) as s:
                    proc = s.get(m.Processor, proc_id)
                    if proc is not None:
                        self._record_worker(s, proc, worker, worker.spec.get("commit", ""))

    def forward_logs(self) -> None:
        """Publish new worker output on `ec.<processor>.log` (read from the log file: no hot-path cost)."""
        for worker in self.workers.values():
            lines = worker.new_log_lines()
            if lines:
                pipe = self.redis.pipeline(transaction=False)
                channel = naming.channel(worker.processor, "log")
                for line in lines:
                    pipe.publish(channel, json.dumps({"channel": "log", "room": worker.processor, "line": line}))
                pipe.execute()

    # -- main loop --------------------------------------------------------------------------

    def run(self) -> None:
        self.register()
        recorder = Recorder(self.db_url, self.redis, self.stop_event)
        recorder.start()
        listener, last_beat, last_full = None, 0.0, 0.0
        try:
            while not self.stop_event.is_set():
                try:
                    if listener is None:
                        listener = self._listen()
                        last_full = 0.0  # changes may have been missed while not listening
                    ready, _, _ = select.select([listener.driver_connection], [], [], 0.25)
                    changed = False
                    if ready:
                        listener.driver_connection.poll()
                        changed = bool(listener.driver_connection.notifies)
                        listener.driver_connection.notifies.clear()
                    now = time.monotonic()
                    if changed or self.wake.is_set() or now - last_full > 10:
                        self.wake.clear()
                        self.reconcile()
                        last_full = now
                    self.supervise()
                    self.forward_logs()
                    if now - last_beat > self.heartbeat_every:
                        self.beat()
                        last_beat = now
                except Exception as exc:  # noqa: BLE001 - the agent must outlive any one failure
                    # The database may be down: workers keep running, events queue in Redis.
                    log.warning("agent: %s; retrying", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                    if listener is not None:
                        listener.invalidate()
                        listener = None
                    self.supervise_quietly()
                    self.stop_event.wait(1.0)
        finally:
            self.shutdown()
            if listener is not None:
                listener.close()
            recorder.join(5)

    def _listen(self):
        raw = get_engine(self.db_url).raw_connection()
        raw.driver_connection.autocommit = True
        with raw.driver_connection.cursor() as cur:
            cur.execute("LISTEN elasticcode_network")
        return raw

    def supervise_quietly(self) -> None:
        """Keep workers alive even while the database is unreachable."""
        for worker in self.workers.values():
            if not worker.alive() and worker.exit_code() != EXIT_BAD_CODE:
                worker.restart_if_due()

    def shutdown(self) -> None:
        self.stop_event.set()
        for proc_id in list(self.workers):
            self._stop_worker(proc_id)
        try:
            with session_scope(self.db_url) as s:
                agent = s.get(m.Agent, self.agent_id)
                if agent is not None:
                    agent.status = "stopped"
                for worker in s.execute(sql_select(m.Worker).where(m.Worker.agent_id == self.agent_id)).scalars():
                    worker.status = "stopped"
        except ElasticCodeError as exc:
            log.warning("could not record shutdown: %s", exc)
