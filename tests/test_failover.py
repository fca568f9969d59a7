"""Two agents on one machine, one killed outright: its node is marked down and its calls run elsewhere.

The same failover as tests/test_cluster.py without network namespaces (so it also runs where they
cannot be made): two agents named as two nodes share the database and a Redis broker; a processor
without a host runs on both. Node `fb`'s agent and workers are killed with SIGKILL while it runs
calls. Expected, from the design (README "Running on many machines"): `fb` shown down within
15 s (three missed 3 s heartbeats plus one check); every call completes and is recorded once as
finished; the calls `fb` was running come back at once (not after Redis's one-hour visibility
timeout) and show 2 deliveries.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import psutil
import pytest
from runtime_helpers import AgentProcess, flow_json, make_repo, wait_until

from elasticcode import config, history
from elasticcode.client.dispatch import Dispatcher, wait_result

pytestmark = pytest.mark.timeout(240)
N, NAP = 20, 1.0  # 20 calls of 1 s on two one-process nodes: about 10 s of work when the fault hits
SHOWN_DOWN_WITHIN = 15.0


def kill_node(agent: AgentProcess, flow, node: str) -> None:
    """SIGKILL of the agent and of every process of its workers (each runs in a session of its own)."""
    pids = [w["process"] for w in flow_json(flow, "ls", "workers") if w["name"].endswith("@" + node) and w["process"]]
    groups = {os.getpgid(pid) for pid in pids if psutil.pid_exists(pid)}
    os.killpg(agent.process.pid, signal.SIGKILL)
    for group in groups:
        os.killpg(group, signal.SIGKILL)
    agent.process.wait(10)


def all_finished(ids: list[str]):
    frame = history()
    rows = frame[frame["id"].isin(ids)]
    return rows.to_dict("records") if len(rows) == len(ids) and set(rows["state"]) == {"finished"} else None


def test_a_killed_node_is_marked_down_and_its_running_calls_run_again_elsewhere(flow, services, home, tmp_path):
    repo = make_repo(tmp_path / "repo")
    survivor = AgentProcess(home / "fa", services, hostname="fa", cpus=1).start()
    victim = AgentProcess(home / "fb", services, hostname="fb", cpus=1).start()
    try:
        for args in (("add", "queue", "-n", "fq"),
                     ("add", "processor", "-n", "fp", "-g", repo.working_tree_dir, "-m", "pyfi.processors.sample", "-c", "1"),
                     ("add", "socket", "-n", "nap", "-q", "fq", "-pn", "fp", "-t", "nap")):
            assert flow(*args).code == 0
        wait_until(lambda: {w["name"] for w in flow_json(flow, "ls", "workers") if w["status"] == "running"}
                   >= {"fp@fa", "fp@fb"}, 180, 0.5, "a worker on each node")
        dispatcher = Dispatcher.for_settings(config.load())
        results = {(r := dispatcher.send("nap", (i, NAP))).id: r for i in range(N)}

        def running_on_victim():
            rows = [r for r in flow_json(flow, "ls", "calls", "-r", "500") if r["id"] in results]
            return [r["id"] for r in rows if r["state"] == "running" and r["worker"] == "fp@fb"]

        held = wait_until(running_on_victim, 60, 0.1, "a call running on node fb")
        kill_node(victim, flow, "fb")
        killed = time.monotonic()
        wait_until(lambda: {n["name"]: n["status"] for n in flow_json(flow, "ls", "nodes")}.get("fb") == "down",
                   SHOWN_DOWN_WITHIN + 5, 0.5, "node fb shown down")
        shown_down = time.monotonic() - killed
        completed = 0
        for result in results.values():
            wait_result(result, timeout=90)
            completed += 1
        finished_by = time.monotonic() - killed
        rows = wait_until(lambda: all_finished(list(results)), 30, 0.5, "every call recorded finished")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- fa:\n{survivor.output()[-3000:]}\n--- fb:\n{victim.output()[-2000:]}") from None
    finally:
        survivor.stop()
        victim.stop()
    print(f"node shown down {shown_down:.1f} s after the kill; last call finished {finished_by:.1f} s after it")
    assert shown_down <= SHOWN_DOWN_WITHIN, shown_down
    assert completed == N
    assert finished_by < 60, f"the killed node's calls waited {finished_by:.0f} s (the visibility timeout?)"
    per_id = Counter(r["id"] for r in rows)
    assert len(per_id) == N and max(per_id.values()) == 1, per_id  # recorded once each
    deliveries = {r["id"]: r["deliveries"] for r in rows}
    assert all(deliveries[call] == 2 for call in held), {call: deliveries[call] for call in held}
    workers = {r["id"]: r["worker"] for r in rows}
    assert all(workers[call] == "fp@fa" for call in held), {call: workers[call] for call in held}  # the latest delivery's
    assert sorted(deliveries.values()).count(1) >= N - 2, Counter(deliveries.values())  # fb held at most 1 + 1 prefetched
