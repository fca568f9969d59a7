"""Back pressure per plug: forwards wait while the target's queue is over the plug's bounds; nothing is dropped."""

from __future__ import annotations

import threading
import time

import pytest
from runtime_helpers import flow_json, make_repo, wait_until

from elasticcode import config
from elasticcode.client.dispatch import Dispatcher
from elasticcode.client.history import history
from elasticcode.runtime import naming
from elasticcode.runtime.backpressure import QueueGauge, over
from elasticcode.runtime.connections import redis_client
from elasticcode.runtime.routes import PlugRoute

pytestmark = pytest.mark.timeout(300)

MODULE = "pressure.steps"
SOURCE = '''
import time


def fast(x):
    return x


def slowish(x):
    time.sleep(0.01)
    return x
'''
CALLS, BOUND = 2000, 100
TARGET_QUEUE = naming.broker_queue("dstq", "dst")


def _network(flow, repo, *plug_options: str) -> None:
    for args in (("add", "queue", "-n", "srcq"), ("add", "queue", "-n", "dstq"),
                 ("add", "processor", "-n", "src", "-g", repo.working_tree_dir, "-m", MODULE, "-h", "localhost", "-c", "1"),
                 ("add", "processor", "-n", "dst", "-g", repo.working_tree_dir, "-m", MODULE, "-h", "localhost", "-c", "1"),
                 ("add", "socket", "-n", "fast", "-q", "srcq", "-pn", "src", "-t", "fast"),
                 ("add", "socket", "-n", "slowish", "-q", "dstq", "-pn", "dst", "-t", "slowish"),
                 ("add", "plug", "-n", "squeeze", "-s", "fast", "-t", "slowish", *plug_options)):
        result = flow(*args)
        assert result.code == 0, result


def test_bounded_plug_keeps_the_target_queue_near_its_bound_and_loses_nothing(flow, agent, tmp_path):
    repo = make_repo(tmp_path / "repo", SOURCE, module="pressure/steps.py")
    _network(flow, repo, "--max-queued", str(BOUND))
    plugs = flow_json(flow, "ls", "plugs")
    assert plugs[0]["max_queued"] == BOUND and plugs[0]["pressure"] == "flowing"
    settings = config.load()
    dispatcher = Dispatcher.for_settings(settings)
    assert dispatcher.send("fast", ("warm",)).get(timeout=120) == "warm"
    assert dispatcher.send("slowish", ("warm",)).get(timeout=120) == "warm"

    broker = redis_client(settings.broker)
    depths: list[int] = []
    pressured: list[str] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            depths.append(broker.llen(TARGET_QUEUE))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        for i in range(CALLS):
            dispatcher.send("fast", (i,))
        for _ in range(50):  # the state while the source waits
            state = flow_json(flow, "ls", "plugs")[0]["pressure"]
            if state.startswith("back-pressured"):
                pressured.append(state)
                break
            time.sleep(0.1)
        for _ in range(50):  # `flow top` shows it too (in red on a terminal)
            shown = flow("top", "--once")
            if "plug squeeze" in shown.out and "back-pressured" in shown.out:
                pressured.append(shown.out)
                break
            time.sleep(0.1)

        def finished():
            frame = history(socket="slowish", state="finished")
            return len(frame) if len(frame) >= CALLS + 2 else None

        wait_until(finished, 180, interval=1.0, what=f"{CALLS} target calls finished")
    finally:
        done.set()
        sampler.join(5)
    took = time.monotonic() - started
    frame = history(socket="slowish")
    # The two warm-up calls (one direct, one along the plug) and all 2,000, each once.
    assert len(frame) == CALLS + 2 and (frame["state"] == "finished").all()
    assert frame["parent"].notna().sum() == CALLS + 1 and frame["parent"].nunique() == CALLS + 1
    peak = max(depths)
    print(f"{CALLS} calls in {took:.1f}s; target queue peaked at {peak} (bound {BOUND}); {len(depths)} samples")
    assert BOUND * 0.8 <= peak <= BOUND + 5, peak  # the bound was reached, and held (the source's pool: 1 process)
    assert len(pressured) == 2 and "queued" in pressured[0] and f"{TARGET_QUEUE} holds" in pressured[1], pressured
    wait_until(lambda: flow_json(flow, "ls", "plugs")[0]["pressure"] == "flowing", 10, what="the plug flowing again")


def test_bounds_are_validated_and_published(flow, services, tmp_path):
    repo = make_repo(tmp_path / "repo", SOURCE, module="pressure/steps.py")
    _network(flow, repo, "--max-queued", "5", "--max-bytes", "100000")
    bad = flow("update", "plug", "-n", "squeeze", "--max-queued", "0")
    assert bad.code == 1 and "--max-queued must be at least 1" in bad.err, bad
    assert flow("update", "plug", "-n", "squeeze", "--max-bytes", "2048").code == 0
    row = flow_json(flow, "ls", "plugs")[0]
    assert (row["max_queued"], row["max_bytes"], row["pressure"]) == (5, 2048, "flowing")

    from elasticcode.catalog.routes import build_routes
    from elasticcode.db.engine import session_scope

    with session_scope(config.load().db) as session:
        plug = build_routes(session).get(row["owner"], "fast").plugs[0]
    assert (plug.max_queued, plug.max_bytes) == (5, 2048)


def test_gauge_counts_messages_and_bytes_of_a_redis_queue(services):
    url = services["ELASTICCODE_BROKER"]
    client = redis_client(url)
    client.delete("gq", "gq\x06\x163")
    gauge = QueueGauge(None, url)
    assert gauge.depth("gq", with_bytes=True) == (0, 0)
    client.rpush("gq", *(["x" * 1000] * 30))
    client.rpush("gq\x06\x163", "y")  # kombu's list for priority 3
    count, size = gauge.depth("gq", with_bytes=True)
    assert count == 31 and size >= 30_000
    plug = PlugRoute("p", "RESULT", "t", "o", max_queued=40, max_bytes=20_000)
    assert over(plug, count, size) and not over(PlugRoute("p", "RESULT", "t", "o", max_queued=40), count, None)
    assert over(PlugRoute("p", "RESULT", "t", "o", max_queued=31), count, None)
