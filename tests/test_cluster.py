"""Three real nodes on one machine: calls spread over them, and a node killed or cut off mid-run.

Each node is a Linux network namespace of scripts/cluster.sh (tests/cluster_bed.py) with an
address, a hostname and an agent of its own offering 1 CPU; the nodes reach the machine's
PostgreSQL, Redis and RabbitMQ at 10.231.0.1, the test process (the client) at 127.0.0.1. A
processor placed on no node in particular (no -h) runs a worker on every node. Each test sends
N CPU-bound calls, may kill a node or cut its link while they run, and counts from the outside:
results delivered (Celery's result backend), calls recorded (the model database), final states,
rows per call, where calls ran, deliveries, and when the last one finished. Expected values come
from the count sent and the bed's shape, not from our code. Runs with a Redis broker and with
RabbitMQ (results stay in Redis); skips where namespaces cannot be made (not root...).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
import pytest
from cluster_bed import ClusterBed, reachable, skip_unless_possible
from conftest import _answers
from runtime_helpers import flow_json, make_repo, use_services, wait_until

from elasticcode import config, history
from elasticcode.client.dispatch import Dispatcher
from elasticcode.runtime.events import ENDING_EVENTS, STATE_OF_EVENT

pytestmark = pytest.mark.timeout(240)

NODES, CPUS = 3, 1  # three nodes of 1 CPU each
CONCURRENCY = 3  # the processor's -c: the most calls one worker runs or holds (prefetch 1 per process)
N, SPIN = 300, 0.05  # 300 calls of 0.05 s of pure Python each
HOSTS = {f"node{i}" for i in range(1, NODES + 1)}
VICTIM = 2  # the node killed or cut off
DOWN, UP = "down", "running"  # a node's status in `flow ls nodes` when its agent fell silent / beats
SHOWN_DOWN_WITHIN = 15.0  # seconds from the fault until the node is shown down
DONE_WITHIN = 30.0  # seconds from the kill (the heal, for a cut) until the last call finished
CUT_FOR = 20.0  # seconds a node's link stays cut
PROCESSOR = "cp"
# Broker (with Redis) and results: a Redis DB of the cluster tests' own, used only while the bed's
# machine-wide lock is held (conftest's sessions take 8..15 at random and flush theirs).
REDIS_DB = 7
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"  # the client's; the nodes get it on 10.231.0.1
FINAL = {STATE_OF_EVENT[e] for e in ENDING_EVENTS}  # finished, failed, dead
# Every call sent completed, is recorded once as finished, none lost, none doubled.
ALL_DONE_ONCE = {"sent": N, "completed": N, "failed": 0, "recorded": N, "duplicated": 0, "finished": N, "dead": 0,
                 "lost": 0}


@dataclass
class Cluster:
    bed: ClusterBed
    dispatcher: Dispatcher
    broker: str

    def logs(self) -> str:
        return f"{self.bed.status()}\n{self.bed.logs()}"


@pytest.fixture(scope="session")
def bed_possible() -> None:
    """Skips (before any database is made) where namespaces cannot be made, with the script's line."""
    skip_unless_possible()


@pytest.fixture(params=["redis", "rabbitmq"])
def cluster(request, bed_possible, db_url, service_url, home, flow, tmp_path, monkeypatch):
    """Three nodes, an agent on each, and a processor of concurrency 3 on no node in particular
    with a socket `spin` (CPU-bound, returns its argument) that has run on every node's worker."""
    from elasticcode.client import settings
    from elasticcode.runtime.connections import redis_client

    if not _answers("127.0.0.1", 6379):
        pytest.skip("needs Redis on 127.0.0.1:6379 (the nodes reach it through the bed's forwarder)")
    redis = f"redis://127.0.0.1:6379/{REDIS_DB}"
    queue = f"cq{uuid.uuid4().hex[:8]}"  # RabbitMQ queues are shared by every run on this machine
    env = {"ELASTICCODE_DB": db_url, "ELASTICCODE_SERVICE_DB": service_url, "ELASTICCODE_BROKER": redis,
           "ELASTICCODE_BACKEND": redis}
    if request.param == "rabbitmq":
        if not _answers("127.0.0.1", 5672):
            pytest.skip("needs RabbitMQ on 127.0.0.1:5672")
        env["ELASTICCODE_BROKER"] = RABBITMQ  # RabbitMQ brokers, Redis keeps the results
    why = reachable(env)
    if why:
        pytest.skip(why)
    repo = make_repo(tmp_path / "repo")
    # The nodes have no route to a package index: check the code out and build its venv here, where
    # the agents find them (the same machine-wide cache; a no-op when a previous run built them).
    from kernel_agent.code import CodeCache, CodeSpec

    CodeCache(tmp_path / "warm").prepare(CodeSpec(gitrepo=str(repo.working_tree_dir)))
    with ClusterBed(tmp_path / "cluster", NODES) as bed:  # its lock held: Redis DB REDIS_DB is ours
        redis_client(redis).flushdb()
        use_services(monkeypatch, db_url, redis, service_url)
        monkeypatch.setenv("ELASTICCODE_BROKER", env["ELASTICCODE_BROKER"])
        Dispatcher.forget_all()
        settings.reset_settings()
        bed.up(env)
        for i in range(1, NODES + 1):
            bed.start_agent(i, env, CPUS, "--stop-timeout", "10")
        for args in (("add", "queue", "-n", queue),
                     ("add", "processor", "-n", PROCESSOR, "-g", repo.working_tree_dir, "-m", "pyfi.processors.sample",
                      "-c", str(CONCURRENCY)),
                     ("add", "socket", "-n", "spin", "-q", queue, "-pn", PROCESSOR, "-t", "spin")):
            done = flow(*args)
            assert done.code == 0, f"flow {' '.join(args)}: {done!r}"
        dispatcher = Dispatcher.for_settings(config.load())
        deployed = Cluster(bed, dispatcher, request.param)
        try:
            warm = dispatcher.send("spin", ("warm", 0))
            settle(bed, warm.ready, 120, "the first call's result")
            assert warm.get(timeout=5) == "warm"
            settle(bed, lambda: running_workers(flow) == HOSTS, 120, f"a running worker on each of {sorted(HOSTS)}")
        except Exception as exc:  # noqa: BLE001 - explained with the nodes' logs
            raise AssertionError(f"the processor never ran on every node: {exc}\n"
                                 f"workers: {flow_json(flow, 'ls', 'workers')}\n{deployed.logs()}") from None
        try:
            yield deployed
        finally:
            bed.down()  # before the flush below: no agent writes to the Redis DB any more
            redis_client(redis).flushdb()
            Dispatcher.forget_all()
            settings.reset_settings()
    if request.param == "rabbitmq":  # the bed is down: nobody consumes it any more
        from kombu import Connection

        try:
            with Connection(RABBITMQ, connect_timeout=5) as connection:
                connection.default_channel.queue_delete(f"{queue}.{PROCESSOR}")
        except Exception:  # noqa: BLE001, S110 - only tidiness
            pass


def settle(bed: ClusterBed, predicate, timeout: float, what: str) -> None:
    """Wait for predicate(); fail at once when an agent exits meanwhile (its log says why)."""
    def done():
        if bed.exited():
            raise AssertionError(f"the agent of {', '.join(bed.exited())} exited while waiting for {what}")
        return predicate()

    wait_until(done, timeout, 0.5, what=what)


def running_workers(flow) -> set[str]:
    return {w["hostname"] for w in flow_json(flow, "ls", "workers") if w["status"] == "running"}


def send(dispatcher: Dispatcher, count: int = N) -> dict[str, object]:
    return {(r := dispatcher.send("spin", (i, SPIN))).id: r for i in range(count)}


def calls(ids) -> pd.DataFrame:
    frame = history()
    return frame[frame["id"].isin(list(ids))]


def under_way(results, done: int) -> None:
    """Wait until `done` calls finished: the others are queued or running."""
    wait_until(lambda: (calls(results)["state"] == "finished").sum() >= done, 90, 0.2, what=f"{done} calls finished")


def node_status(flow, name: str) -> str | None:
    return next((row.get("status") for row in flow_json(flow, "ls", "nodes") if row["name"] == name), None)


def seconds_until(predicate, timeout: float, interval: float = 0.5) -> float | None:
    """Seconds until predicate() held (polled), or None if it did not within timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    return None


def outcome(cluster: Cluster, results: dict[str, object], timeout: float,
            record_timeout: float = 120) -> tuple[dict[str, int], pd.DataFrame]:
    """Wait up to `timeout` s for every call's result, then up to `record_timeout` s for every
    call's final record (10 s when results are missing: those calls are not coming); count what
    happened to them, and return the rows. A killed agent's recorder leaves the events it had read
    to the others only after a minute (kernel_agent/recorder.py), hence the record timeout."""
    deadline = time.monotonic() + timeout
    completed, failed = 0, []
    for call_id, result in results.items():
        try:
            result.get(timeout=max(1.0, deadline - time.monotonic()))
            completed += 1
        except Exception as exc:  # noqa: BLE001 - a call that failed, was dead-lettered or never came back
            failed.append((call_id, f"{exc.__class__.__name__}: {exc}"[:120]))
    results_in = time.monotonic() - deadline + timeout
    last: list[pd.DataFrame] = [calls(results)]

    def all_recorded():
        last[0] = frame = calls(results)
        return frame["id"].nunique() >= len(results) and frame["state"].isin(FINAL).all()

    try:
        wait_until(all_recorded, record_timeout if not failed else 10, 0.5, what="every call recorded in a final state")
    except AssertionError:
        frame = last[0]
        raise AssertionError(
            f"completed {completed} of {len(results)}, failed {len(failed)} {failed[:5]}; recorded {frame['id'].nunique()}, "
            f"states {dict(Counter(frame['state']))}; not final: "
            f"{frame[~frame['state'].isin(FINAL)][['id', 'state', 'host', 'deliveries']].values.tolist()[:10]}\n"
            f"{cluster.logs()}") from None
    frame = last[0]
    print(f"\nresults in {results_in:.1f} s, then records in {time.monotonic() - deadline + timeout - results_in:.1f} s")
    states, per_id = Counter(frame["state"]), Counter(frame["id"])
    return ({"sent": len(results), "completed": completed, "failed": len(failed), "recorded": len(per_id),
             "duplicated": sum(n - 1 for n in per_id.values()), "finished": states["finished"],
             "dead": states["dead"], "lost": len(results) - len(per_id)}, frame)


def summary(frame: pd.DataFrame) -> str:
    return (f"per host {dict(Counter(frame['host']))}, deliveries {dict(Counter(frame['deliveries']))}, "
            f"states {dict(Counter(frame['state']))}")


def test_calls_of_a_processor_on_no_node_in_particular_run_on_all_three_nodes(cluster):
    results = send(cluster.dispatcher)
    counts, frame = outcome(cluster, results, 120)
    assert counts == ALL_DONE_ONCE, f"{counts!r}\n{summary(frame)}\n{cluster.logs()}"
    per_host = Counter(frame["host"])
    assert set(per_host) == HOSTS and sum(per_host.values()) == N, f"{summary(frame)}\n{cluster.logs()}"
    assert (frame["deliveries"] == 1).all(), summary(frame)  # no fault: each call delivered once
    print(f"\n{summary(frame)}")


def test_a_node_killed_mid_run_its_calls_run_again_on_the_others(cluster, flow):
    results = send(cluster.dispatcher)
    under_way(results, N * 3 // 10)
    victim = f"node{VICTIM}"
    killed_at = datetime.now(timezone.utc)
    killed = cluster.bed.kill(VICTIM)  # SIGKILL to the agent and its workers: the node is gone
    shown_down = seconds_until(lambda: node_status(flow, victim) == DOWN, SHOWN_DOWN_WITHIN + 5)
    counts, frame = outcome(cluster, results, 2 * DONE_WITHIN)
    where = f"{killed}\n{summary(frame)}\n{cluster.logs()}"
    assert counts == ALL_DONE_ONCE, f"{counts!r}\n{where}"
    deliveries = Counter(frame["deliveries"])
    redelivered = frame[frame["deliveries"] == 2]
    # What the victim held (running or taken, at most one per pool process) ran again once, on another node.
    assert set(deliveries) <= {1, 2} and deliveries[2] <= CONCURRENCY, where
    on_victim = redelivered[redelivered["host"] == victim]
    assert on_victim.empty, (
        f"a redelivered call is recorded as run on the killed node (its final delivery ran elsewhere): "
        f"{[flow_json(flow, 'ls', 'call', '--id', call_id) for call_id in on_victim['id']]}\n{where}")
    took = (frame["finished"].max() - pd.Timestamp(killed_at)).total_seconds()
    print(f"\n{killed}; shown down after {shown_down} s; last call finished {took:.1f} s after the kill; "
          f"{summary(frame)}")
    assert took < DONE_WITHIN, f"the last call finished {took:.1f} s after the kill\n{where}"
    assert shown_down is not None and shown_down <= SHOWN_DOWN_WITHIN, (
        f"{victim} not shown {DOWN!r} within {SHOWN_DOWN_WITHIN:g} s of the kill (took {shown_down}): "
        f"{flow_json(flow, 'ls', 'nodes')}\n{flow_json(flow, 'ls', 'agents')}\n{where}")


def test_a_node_cut_off_for_20s_then_healed_loses_and_repeats_nothing(cluster, flow):
    results = send(cluster.dispatcher)
    under_way(results, N * 3 // 10)
    victim = f"node{VICTIM}"
    cut = time.monotonic()
    cluster.bed.cut(VICTIM)  # its link down: no traffic either way, every process runs on
    try:
        shown_down = seconds_until(lambda: node_status(flow, victim) == DOWN, min(SHOWN_DOWN_WITHIN + 3, CUT_FOR - 1))
        time.sleep(max(0.0, CUT_FOR - (time.monotonic() - cut)))
    finally:
        cluster.bed.heal(VICTIM)
    healed_at = datetime.now(timezone.utc)
    shown_up = seconds_until(lambda: node_status(flow, victim) == UP, 30)
    counts, frame = outcome(cluster, results, 2 * DONE_WITHIN)
    where = f"{summary(frame)}\n{cluster.logs()}"
    assert counts == ALL_DONE_ONCE, f"{counts!r}\n{where}"
    deliveries = Counter(frame["deliveries"])
    # Only what the cut node held (at most one per pool process) may have run twice.
    assert set(deliveries) <= {1, 2} and deliveries[2] <= CONCURRENCY, where
    took = (frame["finished"].max() - pd.Timestamp(healed_at)).total_seconds()
    print(f"\n{victim} cut for {CUT_FOR:g} s: shown down after {shown_down} s, {UP} {shown_up} s after the heal; "
          f"last call finished {took:.1f} s after the heal; {summary(frame)}")
    assert took < DONE_WITHIN, f"the last call finished {took:.1f} s after the heal\n{where}"
    nodes = flow_json(flow, "ls", "nodes")
    assert shown_down is not None and shown_down <= SHOWN_DOWN_WITHIN, (
        f"{victim} not shown {DOWN!r} within {SHOWN_DOWN_WITHIN:g} s of the cut (took {shown_down}): {nodes}\n{where}")
    assert shown_up is not None, f"{victim} not shown {UP!r} again within 30 s of the heal: {nodes}\n{where}"
