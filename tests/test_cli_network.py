"""compose files, node stats and the interval scheduler, against real PostgreSQL and Redis."""

from __future__ import annotations

import json

import pytest
from conftest import flush_redis

from elasticcode.client.dispatch import Dispatcher
from elasticcode.runtime import naming
from elasticcode.runtime.connections import redis_client


def network_file(tmp_path, repo) -> str:
    data = {
        "queues": [{"name": "cq"}],
        "processors": [{"name": "cproc", "gitrepo": str(repo), "module": "pyfi.processors.sample", "concurrency": 1}],
        "sockets": [{"name": "c.do_this", "processor": "cproc", "queue": "cq", "function": "do_this"},
                    {"name": "c.do_something", "processor": "cproc", "queue": "cq", "function": "do_something"}],
        "plugs": [{"name": "cplug", "source": "c.do_something", "target": "c.do_this"}],
    }
    path = tmp_path / "network.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_compose_build_is_idempotent_and_atomic(flow, tmp_path, sample_repo):
    path = network_file(tmp_path, sample_repo)
    first = flow("compose", "build", path)
    assert first.code == 0 and "added plug cplug" in first.out
    again = flow("compose", "build", path)
    assert again.code == 0 and "added" not in again.out
    assert len(json.loads(flow("--json", "ls", "sockets").out)) == 2
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"queues": [{"name": "newq"}], "sockets": [{"name": "x", "processor": "ghost",
                                                                             "queue": "newq", "function": "f"}]}))
    result = flow("compose", "build", str(broken))
    assert result.code == 1 and "ghost" in result.err
    assert [q["name"] for q in json.loads(flow("--json", "ls", "queues").out)] == ["cq"]  # nothing partial
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not valid JSON" in flow("compose", "build", str(bad)).err
    removed = flow("compose", "remove", path)
    assert removed.code == 0 and json.loads(flow("--json", "ls", "processors").out) == []


def test_node_stats(flow):
    assert flow("add", "node", "-n", "n1", "--cpus", "4").code == 0
    rows = json.loads(flow("--json", "node", "stats").out)
    assert rows[0]["name"] == "n1" and rows[0]["cpus"] == 4
    assert "does not exist" in flow("node", "stats", "-n", "nope").err


@pytest.mark.timeout(60)
def test_scheduler_sends_interval_calls(flow, sample_repo, redis_base, monkeypatch):
    client = redis_client(redis_base)
    flush_redis(redis_base)
    monkeypatch.setenv("ELASTICCODE_BROKER", redis_base)
    monkeypatch.setenv("ELASTICCODE_BACKEND", redis_base)
    Dispatcher.forget_all()
    assert flow("add", "queue", "-n", "bq").code == 0
    assert flow("add", "processor", "-n", "bp", "-g", str(sample_repo), "-m", "pyfi.processors.sample").code == 0
    assert flow("add", "socket", "-n", "tick", "-q", "bq", "-pn", "bp", "-t", "do_this", "-i", "1").code == 0
    result = flow("scheduler", "start", "--duration", "2.5")
    assert result.code == 0
    sent = [line for line in result.out.splitlines() if line.startswith("tick: call ")]
    assert 2 <= len(sent) <= 4, result.out
    assert client.llen(naming.broker_queue("bq", "bp")) == len(sent)  # durable in the broker until a worker runs
    flush_redis(redis_base)
