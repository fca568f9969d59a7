"""Change without restarts (issue #9, item 7): sockets added to or removed from a running processor
are served by its running worker; new code is one rolling restart per burst of changes.

Real agent, workers, PostgreSQL and Redis. A background thread calls a `nap` socket back to back
all along; what is measured: the worker's pid (`flow --json ls workers`, "process"), the agent's
log (restarts are logged), the answer of every new socket, and the gaps between consecutive
completions of the stream.

The gap bound: a call takes NAP seconds; with the worker serving throughout, two completions are
at most about one call apart (plus the round trips). GAP_BOUND allows for the call running when a
change lands plus the next one (2 * NAP), and 2 s of slack for a loaded 2-core machine (the agent
preparing code, PostgreSQL, the new socket's first call in the other pool process). A restart of
the worker costs more: about 1.7 s to start a worker, after the warm stop has waited for the
running call, and calls sent meanwhile wait in the queue.

ROLL_GAP_BOUND, for the rolling restart, allows one more second: in the full suite (2 cores, a
loaded machine) one call in a few runs waited 3.1 to 3.25 s, seemingly one the old worker took as
it began its warm stop and gave back only when its connection closed (its stop took 1.8 s there,
the new worker 1.0 s to consume). Not yet found for certain; a stop-then-start restart under the
same load costs about 4 s (stop 1.8 s + start 1.0 s + waiting calls), so the bound still tells
a rolling restart from a cold one.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid

import psutil
import pytest
from runtime_helpers import FUNCTIONS, AgentProcess, commit_change, flow_json, make_repo, wait_until

from elasticcode import config
from elasticcode.client.dispatch import Dispatcher
from elasticcode.runtime import naming
from elasticcode.runtime.app import make_app

pytestmark = pytest.mark.timeout(400)

MODULE = "pyfi.processors.sample"
MODULE_FILE = "pyfi/processors/sample.py"
NAP = 0.2  # seconds per call of the stream
GAP_BOUND = 2 * NAP + 2.0
ROLL_GAP_BOUND = GAP_BOUND + 1.0
RESTARTS = ("rolling restart", "restarted")  # how the agent logs a worker restart (reconcile, supervision)
AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_agent(request, services, home, monkeypatch):
    """An agent with Redis as the broker, or RabbitMQ (when it answers: remote control and
    consumers work differently there)."""
    env = dict(services)
    if request.param == "rabbitmq":
        if not rabbitmq_answers():
            pytest.skip("no RabbitMQ on 127.0.0.1:5672")
        env["ELASTICCODE_BROKER"] = AMQP
        monkeypatch.setenv("ELASTICCODE_BROKER", AMQP)
        Dispatcher.forget_all()
    process = AgentProcess(home / "agent", env, cpus=2).start()
    yield process
    process.stop()


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", FUNCTIONS)


def ok(flow, *args: str) -> None:
    result = flow(*args)
    assert result.code == 0, result


def worker_row(flow, proc: str) -> dict | None:
    return next((w for w in flow_json(flow, "ls", "workers") if w["name"].startswith(proc + "@")), None)


def running(flow, proc: str) -> dict | None:
    procs = {p["name"]: p for p in flow_json(flow, "ls", "processors")}
    return procs.get(proc) if procs.get(proc, {}).get("status") == "running" else None


class Stream:
    """Calls of `socket` back to back from a thread; when each one completed, and what went wrong."""

    def __init__(self, dispatcher: Dispatcher, socket: str):
        self.dispatcher, self.socket = dispatcher, socket
        self.done: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            try:
                value = self.dispatcher.send(self.socket, (i,), {"seconds": NAP}).get(timeout=60)
                if value != i:
                    self.errors.append(f"call {i} answered {value!r}")
            except Exception as exc:  # noqa: BLE001 - counted, asserted on
                self.errors.append(f"call {i}: {type(exc).__name__}: {exc}")
            self.done.append(time.monotonic())
            i += 1

    def start(self) -> Stream:
        self._thread.start()
        wait_until(lambda: len(self.done) >= 3, 60, 0.05, what="the stream's first calls")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(70)

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.done, self.done[1:], strict=False)]


def locked(lock: threading.Lock, flow, *args: str):
    """The CLI runner swaps sys.stdout: one invocation at a time."""
    with lock:
        return flow(*args)


def active_queues(app, worker: str) -> set[str]:
    replies = app.control.broadcast("active_queues", destination=[worker], reply=True, timeout=2.0, limit=1) or []
    return {q["name"] for reply in replies for queues in reply.values() for q in queues}


def test_ten_sockets_added_to_a_busy_processor_never_restart_its_worker(flow, broker_agent, repo):
    agent = broker_agent
    proc = f"live{uuid.uuid4().hex[:6]}"  # RabbitMQ's queues are shared by every run on this machine
    ok(flow, "add", "queue", "-n", "lq")
    ok(flow, "add", "processor", "-n", proc, "-g", repo.working_tree_dir, "-m", MODULE, "-h", "localhost", "-c", "2")
    ok(flow, "add", "socket", "-n", f"{proc}.nap", "-q", "lq", "-pn", proc, "-t", "nap")
    wait_until(lambda: running(flow, proc), 120, what=f"{proc} running")
    dispatcher = Dispatcher.for_settings(config.load())
    assert dispatcher.send(f"{proc}.nap", ("first",), {"seconds": 0}).get(timeout=60) == "first"
    pid = worker_row(flow, proc)["process"]
    log_start = len(agent.output())

    app = make_app(config.load().require_broker())
    worker = naming.worker_name(proc)
    stream = Stream(dispatcher, f"{proc}.nap").start()
    answered, latency = {}, {}
    try:
        for i in range(10):
            # Half of them on the queue already consumed (the call may reach the worker before the
            # agent has told it about the socket), half on a queue of their own (a new consumer).
            queue = "lq" if i % 2 == 0 else f"lq{i}"
            if i % 2:
                ok(flow, "add", "queue", "-n", queue)
            t0 = time.monotonic()
            ok(flow, "add", "socket", "-n", f"{proc}.s{i}", "-q", queue, "-pn", proc, "-t", "do_this")
            answered[i] = dispatcher.send(f"{proc}.s{i}", (i,)).get(timeout=60)
            latency[i] = time.monotonic() - t0

        # Removing sockets: the one with a queue of its own stops being consumed.
        assert {f"lq.{proc}", f"lq1.{proc}", f"lq3.{proc}"} <= active_queues(app, worker)
        ok(flow, "delete", "socket", "-n", f"{proc}.s1")
        ok(flow, "delete", "socket", "-n", f"{proc}.s2")
        wait_until(lambda: f"lq1.{proc}" not in active_queues(app, worker) or None, 30, 0.25,
                   what="the removed socket's queue no longer consumed")
        assert {f"lq.{proc}", f"lq3.{proc}"} <= active_queues(app, worker)
        assert dispatcher.send(f"{proc}.s4", (4,)).get(timeout=30) == "Do this: 4"

        # A new pool range is taken live too: the worker's autoscale minimum follows `--min`.
        ok(flow, "update", "processor", "-n", proc, "--min", "1")

        def pool_min():
            replies = app.control.broadcast("ec_pool", destination=[worker], reply=True, timeout=1.0, limit=1) or []
            return next((body for reply in replies for body in reply.values() if body.get("min") == 1), None)

        wait_until(pool_min, 30, 0.25, what="the worker's autoscale minimum at 1")
        time.sleep(2 * NAP)
    finally:
        stream.stop()
        app.close()

    gaps = stream.gaps()
    log = agent.output()[log_start:]
    print(f"10 sockets added: first answer of each {', '.join(f'{v:.2f}' for v in latency.values())} s after its add; "
          f"then 2 removed and --min changed; stream: {len(stream.done)} calls, longest gap {max(gaps):.2f} s "
          f"(bound {GAP_BOUND:.1f} s), worker pid {pid} -> {worker_row(flow, proc)['process']}")
    assert answered == {i: f"Do this: {i}" for i in range(10)}
    assert stream.errors == []
    assert worker_row(flow, proc)["process"] == pid
    assert psutil.pid_exists(pid)
    assert not [line for line in log.splitlines() if any(word in line for word in RESTARTS)], log
    assert log.count("the running worker") >= 1  # the agent applied them live (at most one per reconcile)
    assert max(gaps) <= GAP_BOUND, gaps
    assert dispatcher.send(f"{proc}.nap", ("after",), {"seconds": 0}).get(timeout=30) == "after"


def test_new_commit_then_a_socket_is_one_rolling_restart_while_calls_go_on(flow, agent, repo):
    lock = threading.Lock()
    cli, flow = flow, lambda *args: locked(lock, cli, *args)  # the pid sampler's thread uses the CLI too
    ok(flow, "add", "queue", "-n", "rq")
    ok(flow, "add", "processor", "-n", "roll1", "-g", repo.working_tree_dir, "-m", MODULE, "-h", "localhost", "-c", "2")
    ok(flow, "add", "socket", "-n", "roll1.nap", "-q", "rq", "-pn", "roll1", "-t", "nap")
    wait_until(lambda: running(flow, "roll1"), 120, what="roll1 running")
    dispatcher = Dispatcher.for_settings(config.load())
    assert dispatcher.send("roll1.nap", ("first",), {"seconds": 0}).get(timeout=60) == "first"
    pid = worker_row(flow, "roll1")["process"]
    log_start = len(agent.output())

    pids: list[int] = []
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            row = worker_row(flow, "roll1")
            if row and (not pids or pids[-1] != row["process"]):
                pids.append(row["process"])
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    stream = Stream(dispatcher, "roll1.nap").start()
    sampler.start()
    try:
        sha = commit_change(repo, MODULE_FILE, FUNCTIONS + "\n\ndef version(x=None):\n    return 2\n")
        t0 = time.monotonic()
        ok(flow, "update", "processor", "-n", "roll1", "--commit", sha)
        ok(flow, "add", "socket", "-n", "roll1.version", "-q", "rq", "-pn", "roll1", "-t", "version")
        assert dispatcher.send("roll1.version", ()).get(timeout=120) == 2
        switched = time.monotonic() - t0
        new_pid = wait_until(lambda: (worker_row(flow, "roll1")["process"] != pid) and worker_row(flow, "roll1")["process"],
                             30, what="the new worker's row")
        wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 30,
                   what="the old worker gone")
        time.sleep(4.0)  # long enough for a second (debounced) restart, if there were one
    finally:
        stream.stop()
        sampling.set()
        sampler.join(5)

    gaps = stream.gaps()
    log = agent.output()[log_start:]
    restarts = [line for line in log.splitlines() if "rolling restart" in line]
    print(f"new commit + a socket: the new socket answered {switched:.2f} s after the update; worker pids {pids}; "
          f"stream: {len(stream.done)} calls, longest gap {max(gaps):.2f} s (bound {ROLL_GAP_BOUND:.1f} s); "
          f"agent: {restarts}")
    assert len(restarts) == 1, log
    assert pids == [pid, new_pid]
    assert worker_row(flow, "roll1")["commit"] == sha
    assert psutil.pid_exists(new_pid)
    assert stream.errors == []
    assert max(gaps) <= ROLL_GAP_BOUND, gaps
    assert dispatcher.send("roll1.nap", ("after",), {"seconds": 0}).get(timeout=30) == "after"
