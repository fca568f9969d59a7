"""The published figures and `flow top`: a real agent on 2 cores publishes, once a second, what its
scaling step sees and decides; a burst shows as a queue, both cores busy and the pool grown to 2,
then the pool shrinks back to its minimum after the cool-down. Everything asserted here is read
from the published records with the contract's own reader (`elasticcode.runtime.metrics`).
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from runtime_helpers import FUNCTIONS, AgentProcess, flow_json, make_repo, wait_until

from elasticcode import config
from elasticcode.client.dispatch import Dispatcher
from elasticcode.runtime import metrics
from elasticcode.runtime.connections import coordination_client

pytestmark = pytest.mark.timeout(300)

MODULE = "pyfi.processors.sample"
NODE = "topnode"
@pytest.fixture
def agent(services, home):
    process = AgentProcess(home / "agent", services, hostname=NODE, cpus=2).start()
    yield process
    process.stop()


def mine(record: metrics.NodeMetrics) -> metrics.ProcessorMetrics | None:
    return record.processor("t1") if record.node == NODE else None


def test_published_figures_show_a_burst_and_flow_top_shows_them(flow, agent, tmp_path):
    repo = make_repo(tmp_path / "repo", FUNCTIONS)
    for args in (("queue", "-n", "tq"),
                 ("processor", "-n", "t1", "-g", repo.working_tree_dir, "-m", MODULE, "-h", NODE, "-c", "2"),
                 ("socket", "-n", "t1.spin", "-q", "tq", "-pn", "t1", "-t", "spin")):
        result = flow("add", *args)
        assert result.code == 0, result
    wait_until(lambda: {p["name"]: p["status"] for p in flow_json(flow, "ls", "processors")}.get("t1") == "running",
               120, what="t1 running")
    dispatcher = Dispatcher.for_settings(config.load())
    assert dispatcher.send("t1.spin", ("warm", 0.05)).get(timeout=60) == "warm"
    client = coordination_client(config.load().broker, config.load().backend)

    # The latest record names the node and the processor, idle: no queue, nothing busy.
    idle = wait_until(lambda: next((p for r in metrics.latest(client) if (p := mine(r)) and p.queue == 0
                                    and p.busy == 0 and p.finished >= 1), None), 30, what="t1's idle figures")
    node = next(r for r in metrics.latest(client) if r.node == NODE)
    assert node.cpus == 2 and abs(node.ts - time.time()) < 5
    assert (idle.min, idle.max) == (0, 2)
    finished_before = idle.finished

    # Every record published from now on, read as the API server will read them.
    records: list[metrics.NodeMetrics] = []
    stop = threading.Event()

    def collect():
        for record in metrics.follow(client, since=time.time(), block=0.5):
            records.append(record)
            if stop.is_set():
                break

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    started = time.monotonic()
    burst = [dispatcher.send("t1.spin", (i, 0.05)) for i in range(200)]  # 50 ms each
    assert [r.get(timeout=120) for r in burst] == list(range(200))
    burst_seconds = time.monotonic() - started

    # After the burst and the cool-down (10 s), the pool shrinks back to its minimum (0).
    shrunk = wait_until(lambda: next((p for r in records[-3:] if (p := mine(r)) and p.pool == 0), None),
                        60, 0.5, what="t1's published pool back to 0")
    after_seconds = time.monotonic() - started - burst_seconds
    stop.set()
    collector.join(5)

    figures = [(round(r.ts - records[0].ts, 1), p.queue, p.busy, p.pool, p.share, p.calls_per_s, p.finished)
               for r in records if (p := mine(r))]
    seen = [p for r in records if (p := mine(r))]
    decisions = sorted({(p.decided, p.decision) for p in seen if p.decision})
    print(f"\nburst of 200 x 50 ms on 2 cores: {burst_seconds:.1f} s; pool back to {shrunk.pool} "
          f"{after_seconds:.1f} s after it; {len(seen)} records (t, queue, busy, pool, share, calls/s, finished):")
    for row in figures:
        print("   ", row)
    print("    decisions:", [d for _, d in decisions])

    assert max(p.queue for p in seen) > 0, figures  # calls waited
    assert max(p.busy for p in seen) == 2, figures  # both cores busy
    assert max(p.pool for p in seen) == 2, figures  # the pool grew to 2
    assert max(p.share for p in seen) == 2, figures
    assert all(p.busy <= p.pool and p.idle == p.pool - p.busy for p in seen), figures
    assert max(p.calls_per_s for p in seen) >= 10, figures  # 2 cores, 50 ms: about 40 calls/s
    assert shrunk.pool == shrunk.min == 0 and shrunk.busy == 0 and shrunk.queue == 0, shrunk
    counted = wait_until(lambda: next((p.finished for r in metrics.latest(client) if (p := mine(r)) and p.finished
                                       >= finished_before + 200), None), 10, what="every call of the burst counted")
    assert counted == finished_before + 200, (counted, finished_before)
    assert any("backlog" in d for _, d in decisions), decisions  # the share rose for the backlog
    assert any(d.endswith("idle") for _, d in decisions), decisions  # and fell back when idle

    # `flow top --once` and `flow --json top` show the processor on its node.
    once = flow("top", "--once")
    assert once.code == 0, once
    assert NODE in once.out and "t1" in once.out and "0..2" in once.out, once.out
    shown = json.loads(flow("--json", "top").out)
    assert [(r["node"], [p["processor"] for p in r["processors"]]) for r in shown if r["node"] == NODE] == [(NODE, ["t1"])]
    t1 = shown[[r["node"] for r in shown].index(NODE)]["processors"][0]
    assert t1["finished"] == finished_before + 200 and t1["idle"] == t1["pool"] - t1["busy"], t1
    live = flow("top", "--timeout", "1.5")
    assert live.code == 0 and "t1" in live.out, live

    # An agent that stops withdraws its figures: `flow top` says so in one line.
    agent.stop()
    assert not [r for r in metrics.latest(client) if r.node == NODE]
    gone = flow("top", "--once")
    assert gone.code == 1 and gone.err.count("\n") == 1 and "no agent publishes figures" in gone.err, gone
