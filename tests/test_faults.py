"""Faults with calls in flight: every call completes or is dead-lettered, is recorded once, none is lost.

Each test sends a known number of calls, causes one fault, and counts from the outside: results
delivered (Celery's result backend), calls recorded (the model database, through `flow ls calls`),
final states, duplicates and losses. Expected values come from the count sent, not from our code.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter

import psutil
import pytest
from runtime_helpers import AgentProcess, flow_json, make_repo, use_services, wait_until

from elasticcode import config, history
from elasticcode.client.dispatch import Dispatcher, wait_result
from elasticcode.embedded import redis as embedded_redis
from elasticcode.runtime.events import ENDING_EVENTS, STATE_OF_EVENT

pytestmark = pytest.mark.timeout(300)
FINAL = {STATE_OF_EVENT[e] for e in ENDING_EVENTS}  # finished, failed, dead


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of this test's own, configured as `flow up` configures it, that it may kill. Its append-only
    file is fsynced on every write: with Redis's default `everysec`, Redis itself may lose up to 2 s
    of writes it acknowledged when it is killed (a result, a queued call), which no client can undo."""
    home = tmp_path / "r"
    home.mkdir()
    embedded_redis.up(home, lambda _: None, fsync="always")
    yield home
    embedded_redis.down(home, lambda _: None)


@pytest.fixture
def fault_services(db_url, service_url, private_redis, home, monkeypatch):
    from elasticcode.client import settings

    yield use_services(monkeypatch, db_url, embedded_redis.url(private_redis), service_url)
    settings.reset_settings()
    Dispatcher.forget_all()


def deploy(flow, env: dict, home, tmp_path, queue: str = "fq"):
    """An agent and a processor of concurrency 2 with a socket `nap` (sleeps, returns its argument)."""
    repo = make_repo(tmp_path / "repo")
    agent = AgentProcess(home / "agent", env).start()
    for args in (("add", "queue", "-n", queue),
                 ("add", "processor", "-n", "fp", "-g", repo.working_tree_dir, "-m", "pyfi.processors.sample", "-c", "2"),
                 ("add", "socket", "-n", "nap", "-q", queue, "-pn", "fp", "-t", "nap")):
        assert flow(*args).code == 0
    dispatcher = Dispatcher.for_settings(config.load())
    try:
        assert dispatcher.send("nap", ("warm", 0)).get(timeout=180) == "warm"
    except Exception as exc:
        agent.stop()
        raise AssertionError(f"the processor never ran: {exc!r}\n{flow_json(flow, 'ls', 'processors')}\n"
                             f"{log_lines(home, 'elasticcode', 'ERROR', 'WARNING', 'Error')}") from None
    return agent, dispatcher


@pytest.fixture
def deployed(flow, fault_services, home, tmp_path):
    agent, dispatcher = deploy(flow, fault_services, home, tmp_path)
    yield agent, dispatcher
    agent.stop()


def send(dispatcher: Dispatcher, count: int, seconds: float) -> dict[str, object]:
    return {(r := dispatcher.send("nap", (i, seconds))).id: r for i in range(count)}


class Outcome(dict):
    """Counts of what happened to the calls sent; its repr also names the calls whose result raised."""

    def __init__(self, counts: dict[str, int], failures: list[tuple[str, str]], states: dict[str, str]):
        super().__init__(counts)
        self.failures = [(call_id, reason, states.get(call_id)) for call_id, reason in failures]

    def __repr__(self) -> str:
        return f"{dict(self)!r} failures (id, raised, recorded state): {self.failures!r}"


def outcome(flow, results: dict[str, object], timeout: float) -> Outcome:
    """Wait for every call's result and record; count what happened to them."""
    deadline = time.monotonic() + timeout
    completed, failed = 0, []
    for call_id, result in results.items():
        try:
            wait_result(result, timeout=max(1.0, deadline - time.monotonic()))  # what CallHandle.get does
            completed += 1
        except Exception as exc:  # noqa: BLE001 - a dead-lettered or failed call raises; counted below
            failed.append((call_id, f"{exc.__class__.__name__}: {exc}"[:200]))
    last: list[dict] = []

    def all_recorded():
        last[:] = [r for r in flow_json(flow, "ls", "calls", "-r", "5000") if r["id"] in results]
        return last if len(last) >= len(results) and all(r["state"] in FINAL for r in last) else None

    try:
        rows = wait_until(all_recorded, max(10.0, deadline - time.monotonic()), 0.5, what="every call recorded in a final state")
    except AssertionError:
        raise AssertionError(f"completed {completed}, failed {failed}, not final: "
                             f"{[(r['id'], r['state']) for r in last if r['state'] not in FINAL]}, "
                             f"recorded {len(last)} of {len(results)}") from None
    states = Counter(r["state"] for r in rows)
    per_id = Counter(r["id"] for r in rows)
    return Outcome({"sent": len(results), "completed": completed, "failed": len(failed), "recorded": len(per_id),
                    "duplicated": sum(n - 1 for n in per_id.values()), "finished": states["finished"],
                    "dead": states["dead"], "lost": len(results) - len(per_id)},
                   failed, {r["id"]: r["state"] for r in rows})


def running_calls(flow, ids) -> list[dict]:
    return [r for r in flow_json(flow, "ls", "calls", "-r", "5000") if r["id"] in ids and r["state"] == "running"]


def log_lines(home, *words: str) -> str:
    """Lines of every log under the test's home that mention one of `words` (for failure messages)."""
    from elasticcode.embedded.workers import run_dirs

    out = []
    for path in sorted([*home.rglob("*.log"), *(f for d in run_dirs(home / "agent") for f in d.rglob("*.log"))]):
        out += [f"{path.name}: {line}" for line in path.read_text(errors="replace").splitlines()
                if any(w in line for w in words)]
    return "\n".join(out[-60:])


def finished_count(flow, ids) -> int:
    return sum(1 for r in flow_json(flow, "ls", "calls", "-r", "5000") if r["id"] in ids and r["state"] == "finished")


def under_way(flow, results, done: int = 10) -> None:
    """Wait until `done` calls finished: the rest are queued or running (2 at a time)."""
    wait_until(lambda: finished_count(flow, results) >= done, 60, 0.1, what=f"{done} calls finished")


N, NAP = 100, 0.2  # 100 calls of 0.2 s on 2 processes: about 10 s of work in flight when the fault hits
# Every call sent completed, is recorded once as finished, none lost, none doubled.
ALL_DONE_ONCE = {"sent": N, "completed": N, "failed": 0, "recorded": N, "duplicated": 0, "finished": N, "dead": 0,
                 "lost": 0}


def test_whole_worker_killed_with_redis_its_calls_run_again_within_30s(flow, deployed, home):
    agent, dispatcher = deployed
    results = send(dispatcher, N, NAP)
    under_way(flow, results)
    worker = flow_json(flow, "ls", "workers")[0]["process"]
    killed = time.monotonic()
    os.kill(worker, signal.SIGKILL)  # the worker's main process: its pool children are orphaned
    try:
        counts = outcome(flow, results, 90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log_lines(home, 'elasticcode', 'put back', 'could not', 'ERROR', 'WARNING')}") from None
    assert time.monotonic() - killed < 60, "the calls of the killed worker waited for the visibility timeout"
    assert counts == ALL_DONE_ONCE, f"{counts!r}\n{agent.output()[-3000:]}"
    frame = history()
    deliveries = frame[frame["id"].isin(list(results))]["deliveries"].tolist()
    # The ones it held (2 running, prefetch 1 per process) were delivered twice, every other once.
    assert 1 <= deliveries.count(2) <= 2 and deliveries.count(1) == N - deliveries.count(2), Counter(deliveries)


def test_pool_process_killed_its_call_runs_again(flow, deployed):
    agent, dispatcher = deployed
    results = send(dispatcher, N, NAP)
    under_way(flow, results)
    worker = psutil.Process(flow_json(flow, "ls", "workers")[0]["process"])
    worker.children()[0].kill()  # one pool process: Celery rejects its message back (reject_on_worker_lost)
    counts = outcome(flow, results, 90)
    assert counts == ALL_DONE_ONCE, f"{counts!r}\n{agent.output()[-3000:]}"


def test_agent_killed_and_restarted_loses_and_repeats_nothing(flow, deployed, fault_services, home):
    agent, dispatcher = deployed
    results = send(dispatcher, N, NAP)
    under_way(flow, results)
    os.killpg(agent.process.pid, signal.SIGKILL)  # the agent only: its workers run on in their own sessions
    agent.process.wait(10)
    agent.start()  # the new agent stops the old workers (running calls finish first) and starts its own
    counts = outcome(flow, results, 120)
    assert counts == ALL_DONE_ONCE, f"{counts!r}\n{agent.output()[-3000:]}"


def test_redis_killed_and_restarted_with_calls_running_and_queued(flow, deployed, private_redis, home):
    agent, dispatcher = deployed
    results = send(dispatcher, N, NAP)
    under_way(flow, results)
    server = embedded_redis.server_process(private_redis)
    server.kill()  # kill -9: whatever Redis had written to its append-only file is all it keeps
    psutil.wait_procs([server], timeout=10)
    time.sleep(5)
    embedded_redis.up(private_redis, lambda _: None, fsync="always")
    try:
        counts = outcome(flow, results, 150)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log_lines(home, 'elasticcode', 'estor', 'ancel', 'onnection', 'ERROR', 'WARNING')}") from None
    assert counts["lost"] == 0 and counts["duplicated"] == 0 and counts["recorded"] == N, repr(counts)
    assert counts["completed"] + counts["dead"] == N, f"{counts!r}\n{agent.output()[-3000:]}"


RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"


def _rabbitmq_restartable() -> bool:
    if os.geteuid() != 0 or not shutil.which("rabbitmqctl"):
        return False
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.mark.skipif(not _rabbitmq_restartable(), reason="needs root, rabbitmqctl and RabbitMQ on 127.0.0.1:5672")
def test_rabbitmq_restarted_with_calls_running_and_queued(flow, fault_services, home, tmp_path, monkeypatch):
    env = {**fault_services, "ELASTICCODE_BROKER": RABBITMQ}  # RabbitMQ brokers, our private Redis keeps results
    monkeypatch.setenv("ELASTICCODE_BROKER", RABBITMQ)
    Dispatcher.forget_all()
    queue = f"fq{uuid.uuid4().hex[:8]}"  # RabbitMQ queues are shared by every run on this machine
    agent, dispatcher = deploy(flow, env, home, tmp_path, queue=queue)
    try:
        results = send(dispatcher, N, NAP)
        under_way(flow, results)
        rabbitmqctl("stop_app")  # the broker goes away with calls running (unacked) and queued (durable)
        try:
            time.sleep(5)
        finally:
            rabbitmqctl("start_app")
        counts = outcome(flow, results, 180)
        assert counts["lost"] == 0 and counts["duplicated"] == 0 and counts["recorded"] == N, repr(counts)
        assert counts["completed"] + counts["dead"] == N, f"{counts!r}\n{agent.output()[-3000:]}"
    finally:
        agent.stop()


@pytest.mark.skipif(bool(os.environ.get("ELASTICCODE_TEST_EMBEDDED")), reason="run once, in the main suite")
def test_soak_of_10000_calls_completes_records_each_once_and_keeps_worker_memory(flow, deployed):
    agent, dispatcher = deployed
    worker = psutil.Process(flow_json(flow, "ls", "workers")[0]["process"])

    def memory() -> int:  # the worker's main process and its pool, resident
        return sum(p.memory_info().rss for p in (worker, *worker.children()))

    for r in [dispatcher.send("nap", (i, 0)) for i in range(200)]:  # the pool grows to 2 first: compare like with like
        r.get(timeout=120)
    total, before = 10_000, memory()
    results = [dispatcher.send("nap", (i, 0)) for i in range(total)]
    assert [r.get(timeout=300) for r in results] == list(range(total))
    after = memory()
    ids = {r.id for r in results}

    def recorded():
        frame = history(state="finished")
        return [frame] if frame["id"].isin(ids).sum() == total else None

    frame = wait_until(recorded, 120, 1.0, what="10,000 calls recorded")[0]
    mine = frame[frame["id"].isin(ids)]
    assert mine["id"].is_unique and len(mine) == total and (mine["deliveries"] == 1).all()
    print(f"\nworker memory (main + pool, RSS): {before / 1e6:.1f} MB before, {after / 1e6:.1f} MB after {total} calls")
    assert after < before * 1.5 + 20e6, (before, after)  # no leak that grows with calls
