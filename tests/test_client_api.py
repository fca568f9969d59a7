"""The Python API against real agents: the manual's listings, handles, decorators, history()."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import git
import pandas as pd
import pytest
from runtime_helpers import AgentProcess, wait_until

import elasticcode
from elasticcode.client import api as client_api
from elasticcode.errors import ElasticCodeError

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DS = "pyfi.processors.sample.do_something"
DT = "pyfi.processors.sample.do_this"


def ds(*messages):  # the sample module's functions, evaluated here for expected values
    return "TEXT:" + "|".join(str(m) for m in messages)


@pytest.fixture
def sample_git(tmp_path) -> Path:
    repo_dir = tmp_path / "pyfi-processors"
    shutil.copytree(EXAMPLES / "pyfi-processors", repo_dir)
    repo = git.Repo.init(repo_dir, initial_branch="main")
    repo.git.add(A=True)
    actor = git.Actor("t", "t@example.com")
    repo.index.commit("sample", author=actor, committer=actor)
    return repo_dir


@pytest.fixture
def network(services, home, sample_git, flow):
    for args in (
        ("add", "queue", "-n", "pyfi.queue1"),
        ("add", "processor", "-n", "proc1", "-g", str(sample_git), "-m", "pyfi.processors.sample", "-c", "2"),
        ("add", "socket", "-n", DS, "-q", "pyfi.queue1", "-pn", "proc1", "-t", "do_something"),
        ("add", "socket", "-n", DT, "-q", "pyfi.queue1", "-pn", "proc1", "-t", "do_this"),
        ("add", "socket", "-n", "fail", "-q", "pyfi.queue1", "-pn", "proc1", "-t", "fail"),
    ):
        assert flow(*args).code == 0
    agent = AgentProcess(home / "agent", services).start()
    try:
        assert client_api.Socket(name=DS)("warm") == "TEXT:warm"  # waits for the worker
        yield services
    finally:
        agent.stop()


def run_listing(name: str, env: dict) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / "workflows" / name)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# The manual's listings (5.6 and 12.2 listing 3) are checked against Celery's rules in test_fidelity.py.


def test_one_tree_per_workflow_and_handles(network, flow):
    do_something = client_api.Socket(name=DS)
    handle = client_api.pipeline([do_something.p("One"), client_api.parallel([do_something.p("a"), do_something.p("b")])])()
    value = handle.get(timeout=60)
    assert value == [ds(ds("One"), "a"), ds(ds("One"), "b")] and handle.ready()

    def recorded():  # the combinators' own rows too
        frame = elasticcode.history(root=handle.id, combinators=True)
        return [frame] if len(frame) == 5 and (frame["state"] == "finished").all() else None

    [frame] = wait_until(recorded, 30, what="all five calls of the workflow recorded")
    assert set(frame["name"]) == {"pipeline", "parallel", DS} and (frame["tracking"] == handle.id).all()
    tree = handle.tree()
    assert tree["call"]["name"] == "pipeline"
    assert [c["call"]["name"] for c in tree["children"]] == [DS, "parallel"]
    assert [c["call"]["name"] for c in tree["children"][1]["children"]] == [DS, DS]
    graph = flow("ls", "call", "--id", frame[frame["name"] == "parallel"]["id"].iloc[0], "--graph")
    assert graph.out.startswith("pipeline"), graph.out

    call = do_something.delay("x")
    assert call.get(timeout=30) == "TEXT:x" and call.ready()
    assert client_api.Socket(name=DS)._p("y").args == ("y",)


def test_failure_in_nested_parallel_branch_names_the_socket(network):
    do_something, fail = client_api.Socket(name=DS), client_api.Socket(name="fail")
    flow_ = client_api.funnel([do_something.p("ok"), client_api.parallel([do_something.p("x"), fail.p("bad")])],
                              do_something.p("never"))
    started = time.monotonic()
    with pytest.raises(ElasticCodeError, match=r"socket fail failed .*ValueError: cannot handle bad"):
        flow_().get(timeout=60)
    assert time.monotonic() - started < 60
    with pytest.raises(ElasticCodeError, match="socket fail failed"):
        fail("direct")


def test_wait_interactive_in_a_terminal(network, capsys):
    handle = client_api.parallel([client_api.Socket(name=DS).p(i) for i in range(4)])()
    assert handle.wait_interactive(timeout=60) == [ds(i) for i in range(4)]
    assert "calls finished - done" in capsys.readouterr().err


def test_decorator_listing_twice_leaves_one_copy(services, sample_git, flow):
    env = {**services, "GIT_REPO": str(sample_git)}
    for _ in range(2):
        assert run_listing("decorators.py", env).strip() == "Network created."
    procs = {p["name"]: p for p in json.loads(flow("--json", "ls", "processors").out)}
    assert sorted(procs) == ["proc1", "proc2", "proc3"] and procs["proc1"]["concurrency"] == 7
    sockets = json.loads(flow("--json", "ls", "sockets").out)
    assert sorted((s["name"], s["queue"]) for s in sockets) == [
        ("proc1.do_something", "sockq1"), ("proc2.do_this", "sockq2"), ("proc3.do_something", "sockq3")]
    plugs = json.loads(flow("--json", "ls", "plugs").out)
    assert sorted((p["name"], p["source"], p["target"]) for p in plugs) == [
        ("plug1", "proc1.do_something", "proc2.do_this"), ("plug2", "proc3.do_something", "proc2.do_this")]


def test_object_api_is_idempotent(services, sample_git):
    for _ in range(2):
        proc = client_api.Processor(name="procx", module="pyfi.processors.sample", gitrepo=str(sample_git), concurrency=1)
        sock = client_api.Socket(name="x.do_this", processor=proc, queue={"name": "qx"}, task="do_this")
        other = client_api.Socket(name="x.do_something", processor="procx", queue="qx", task="do_something")
        client_api.Plug(name="xplug", source=other, target=sock)
    assert sock.socket["name"] == "x.do_this" and proc.processor["concurrency"] == 1
    assert client_api.Processor(name="procx", concurrency=2).processor["concurrency"] == 2
    with pytest.raises(ElasticCodeError, match="cycle"):
        client_api.Plug(name="back", source=sock, target=other)


def test_history_is_typed_and_fast(services, db_url):
    from sqlalchemy import text

    from elasticcode.db.engine import get_engine

    with get_engine(db_url).begin() as conn:
        conn.execute(text(
            "INSERT INTO call (id, name, state, tracking, started, finished, duration, deliveries, created) "
            "SELECT gen_random_uuid(), 'sock' || (i % 3), CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'finished' END, "
            "NULL, now() - make_interval(secs => i), now() - make_interval(secs => i) + interval '5 ms', 0.005, 1, "
            "now() - make_interval(secs => i) FROM generate_series(1, 10000) AS i"))
    from elasticcode.client.history import history

    started = time.perf_counter()
    frame = history()  # the COPY path itself (elasticcode.history first waits for calls noted as done)
    elapsed = time.perf_counter() - started
    assert len(frame) == 10000
    assert str(frame["started"].dtype).startswith("datetime64") and frame["duration"].dtype == "float64"
    assert frame["created"].is_monotonic_increasing
    assert len(elasticcode.history(socket="sock1", state="failed")) == 334  # i = 10, 40, ..., 9990
    assert len(elasticcode.history(limit=10)) == 10
    by_socket = frame.groupby("name")["duration"].mean()
    assert list(by_socket.index) == ["sock0", "sock1", "sock2"]
    assert elapsed < 5, f"history() of 10k calls took {elapsed:.2f}s"  # measured ~0.1 s; see bench/
    assert isinstance(frame, pd.DataFrame)


def test_history_keeps_empty_text_apart_from_null_and_reads_times_as_utc(services, db_url):
    """COPY writes NULL as an empty field and '' as a quoted one; history() keeps them apart, keeps
    a multi-line error whole, and reads each time as its instant whatever the session's zone."""
    from sqlalchemy import text

    from elasticcode.client.history import copy_frame, history, history_query
    from elasticcode.db.engine import get_engine

    error = 'Traceback:\n  line "1", in f\nValueError: a, b'
    at = pd.Timestamp("2026-06-01 12:34:56.789012", tz="UTC")
    with get_engine(db_url).begin() as conn:
        conn.execute(text(
            "INSERT INTO call (id, name, state, error, started, created) VALUES "
            "(gen_random_uuid(), 'a', 'failed', :error, :at, :at), (gen_random_uuid(), 'b', 'finished', '', NULL, :at + interval '1 s'), "
            "(gen_random_uuid(), 'c', 'finished', NULL, NULL, :at + interval '2 s')"), {"error": error, "at": at.to_pydatetime()})
    frame = history()
    assert frame["name"].tolist() == ["a", "b", "c"]
    assert frame["error"].iloc[0] == error and frame["error"].iloc[1] == "" and frame["error"].iloc[2] is pd.NA
    assert frame["started"].iloc[0] == at and pd.isna(frame["started"].iloc[1])
    raw = get_engine(db_url).raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute("SET TimeZone = 'Asia/Kolkata'")  # a server or role may set any zone
            query, params = history_query()
            zoned = copy_frame(cur, query, params)
        raw.rollback()
    finally:
        raw.close()
    assert zoned["created"].tolist() == frame["created"].tolist() and zoned["created"].iloc[0] == at
