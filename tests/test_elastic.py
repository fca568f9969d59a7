"""Elastic on one node: every processor is deployed, the CPUs are shared among busy pool processes,
pools grow with a backlog and shrink after it, and bad code shows at once whatever else runs.

Real agent, workers, PostgreSQL and Redis. Pool figures come from the outside: the workers' own
answer to a remote-control broadcast (`ec_pool`, Celery's autoscaler and request state) and the
processes of each worker (psutil).
"""

from __future__ import annotations

import threading
import time

import psutil
import pytest
from runtime_helpers import FUNCTIONS, flow_json, make_repo, wait_until

from elasticcode import config
from elasticcode.client.dispatch import Dispatcher
from elasticcode.runtime import naming
from elasticcode.runtime.app import make_app

pytestmark = pytest.mark.timeout(300)

MODULE = "pyfi.processors.sample"
@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", FUNCTIONS)


def add(flow, *args: str) -> None:
    result = flow("add", *args)
    assert result.code == 0, result


def deploy(flow, repo, names: list[str], concurrency: int = 2) -> None:
    add(flow, "queue", "-n", "eq")
    for name in names:
        add(flow, "processor", "-n", name, "-g", repo.working_tree_dir, "-m", MODULE, "-h", "localhost",
            "-c", str(concurrency))
        add(flow, "socket", "-n", f"{name}.spin", "-q", "eq", "-pn", name, "-t", "spin")


def processors(flow) -> dict[str, dict]:
    return {p["name"]: p for p in flow_json(flow, "ls", "processors")}


def all_running(flow, names):
    procs = processors(flow)
    return procs if all(procs.get(n, {}).get("status") == "running" for n in names) else None


class Pools:
    """The workers' own pool reports, by processor name."""

    def __init__(self, names: list[str]):
        self.app = make_app(config.load().require_broker())
        self.names = {naming.worker_name(n): n for n in names}

    def read(self) -> dict[str, dict]:
        replies = self.app.control.broadcast("ec_pool", destination=list(self.names), reply=True, timeout=1.0,
                                             limit=len(self.names)) or []
        return {self.names[k]: v for reply in replies for k, v in reply.items() if k in self.names}


def pool_children(flow, name: str) -> int:
    """Live pool processes of the processor's worker (its children, zombies not counted)."""
    worker = next(w for w in flow_json(flow, "ls", "workers") if w["name"].startswith(name + "@"))
    children = psutil.Process(worker["process"]).children()
    return sum(1 for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE)


def test_four_processors_share_two_cores_grow_with_a_burst_and_shrink_after(flow, agent, repo):
    names = ["e1", "e2", "e3", "e4"]
    deploy(flow, repo, names)
    procs = wait_until(lambda: all_running(flow, names), 120, what="four processors of -c 2 running on 2 cores")
    assert not [p for p in procs.values() if p["status"] == "pending"]
    dispatcher = Dispatcher.for_settings(config.load())
    for name in names:  # each one answers
        assert dispatcher.send(f"{name}.spin", (name,)).get(timeout=60) == name
    pools = Pools(names)
    wait_until(lambda: len(pools.read()) == 4, 30, what="every worker answering")

    samples: list[dict[str, dict]] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(pools.read())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    burst = [dispatcher.send("e1.spin", (i,)) for i in range(200)]
    time.sleep(1.0)
    sent = time.monotonic()
    other = dispatcher.send("e2.spin", ("meanwhile",))
    assert other.get(timeout=30) == "meanwhile"
    other_latency = time.monotonic() - sent
    assert [r.get(timeout=120) for r in burst] == list(range(200))
    burst_seconds = time.monotonic() - started
    stop.set()
    sampler.join(5)

    busy_e1 = max(s.get("e1", {}).get("active", 0) for s in samples)
    busy_node = max(sum(v.get("active", 0) for v in s.values()) for s in samples)
    grown = max(s.get("e1", {}).get("processes", 0) for s in samples)
    print(f"burst of 200: {burst_seconds:.2f} s; e1 busy at most {busy_e1}, node busy at most {busy_node}, "
          f"e1 pool at most {grown}; a call to e2 during the burst took {other_latency:.2f} s; {len(samples)} samples")
    assert busy_e1 == 2, samples[-5:]  # both cores
    assert grown == 2
    assert busy_node <= 2 + 1  # one more only while a share moves and a 20 ms call ends
    assert other_latency < 5

    # The history agrees: two of e1's calls overlapped in time.
    rows = [c for c in flow_json(flow, "ls", "calls", "-r", "1000") if c["name"] == "e1.spin" and c["started"]]
    spans = sorted((c["started"], c["finished"]) for c in rows if c["finished"])
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False)), "no two calls overlapped"

    # After the burst, after the cool-down, the pools shrink back to their minimum (0).
    t0 = time.monotonic()
    wait_until(lambda: all(v.get("processes") == 0 for v in pools.read().values()) or None, 60, 0.5,
               what="pools shrunk back to 0")
    wait_until(lambda: pool_children(flow, "e1") == 0, 15, 0.5, what="e1's pool processes gone")
    print(f"pools back to their minimum {time.monotonic() - t0:.1f} s after the burst")

    # An idle processor answers quickly when a core is free: its first call forks its first process.
    t1 = time.monotonic()
    assert dispatcher.send("e3.spin", ("idle",)).get(timeout=30) == "idle"
    idle_latency = time.monotonic() - t1
    print(f"a call to an idle processor with no process: {idle_latency:.2f} s")
    assert idle_latency < 2.5


def test_problems_show_at_once_while_four_healthy_processors_run(flow, agent, repo, tmp_path):
    healthy = ["h1", "h2", "h3", "h4"]
    deploy(flow, repo, healthy)
    wait_until(lambda: all_running(flow, healthy), 120, what="four healthy processors running")
    bad = {
        "badrepo": (str(tmp_path / "no-such-repo"), MODULE, "spin", [], "no-such-repo"),
        "badcommit": (repo.working_tree_dir, MODULE, "spin", ["--commit", "0123456789abcdef0123456789abcdef01234567"],
                      "0123456789abcdef"),
        "badmodule": (repo.working_tree_dir, "pyfi.processors.nothere", "spin", [], "nothere"),
        "badfunction": (repo.working_tree_dir, MODULE, "no_such_function", [], "no_such_function"),
    }
    added = {}
    for name, (gitrepo, module, function, extra, _) in bad.items():
        add(flow, "processor", "-n", name, "-g", gitrepo, "-m", module, "-h", "localhost", "-c", "2", *extra)
        add(flow, "socket", "-n", f"{name}.s", "-q", "eq", "-pn", name, "-t", function)
        added[name] = time.monotonic()

    def errors():
        procs = processors(flow)
        found = {n: procs[n] for n in bad if procs.get(n, {}).get("status") == "error"}
        return found if len(found) == len(bad) else None

    found = wait_until(errors, 30, 0.25, what="an error status for each bad processor")
    now = time.monotonic()
    print(f"all four errors shown {now - max(added.values()):.1f} s after the last add "
          f"({now - min(added.values()):.1f} s after the first): "
          + "; ".join(f"{n}: {p['status_message']}" for n, p in found.items()))
    for name, (*_, expected) in bad.items():
        assert expected in (found[name]["status_message"] or ""), (name, found[name])
    assert all_running(flow, healthy), processors(flow)
