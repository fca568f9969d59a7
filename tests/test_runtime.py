"""The runtime contract with real agents, workers, PostgreSQL and Redis (and RabbitMQ when it answers)."""

from __future__ import annotations

import socket
import time
import uuid

import psutil
import pytest
from runtime_helpers import AgentProcess, commit_change, flow_json, make_repo, wait_until

from elasticcode import config
from elasticcode.client.dispatch import Dispatcher, WaitingWarning
from elasticcode.runtime import naming
from elasticcode.runtime.connections import redis_client

pytestmark = pytest.mark.timeout(300)

MODULE = "pyfi.processors.sample"



@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


def network(flow, repo, *, concurrency: int = 1, queue: str = "pyfi.queue1", proc: str = "proc1") -> None:
    for args in (
        ("add", "queue", "-n", queue, "-t", "direct"),
        ("add", "processor", "-n", proc, "-g", repo.working_tree_dir, "-m", MODULE, "-h", "localhost", "-c", str(concurrency)),
        ("add", "socket", "-n", f"{MODULE}.do_something", "-q", queue, "-pn", proc, "-t", "do_something"),
        ("add", "socket", "-n", f"{MODULE}.do_this", "-q", queue, "-pn", proc, "-t", "do_this"),
    ):
        result = flow(*args)
        assert result.code == 0, result


def add_socket(flow, name: str, function: str, proc: str = "proc1", queue: str = "pyfi.queue1") -> None:
    result = flow("add", "socket", "-n", name, "-q", queue, "-pn", proc, "-t", function)
    assert result.code == 0, result


def calls(flow) -> list[dict]:
    return flow_json(flow, "ls", "calls", "-r", "1000")


def test_quickstart_runs_and_a_plug_records_parent_and_child(flow, agent, repo):
    network(flow, repo)
    run = flow("task", "run", "--socket", f"{MODULE}.do_this", "--data", "['some data']", "--timeout", "120")
    assert run.code == 0, (run, agent.output())
    assert run.out.strip() == "Do this: ['some data']"

    assert flow("add", "plug", "-n", "p1", "-s", f"{MODULE}.do_something", "-t", f"{MODULE}.do_this").code == 0
    time.sleep(1.5)  # the topology reaches workers within a second
    piped = flow("task", "run", "-s", f"{MODULE}.do_something", "--timeout", "60", input="HI THERE!\n")
    assert piped.out.strip() == "TEXT:HI THERE!", piped

    def chain():
        rows = calls(flow)
        child = [c for c in rows if c["parent"] and c["state"] == "finished"]
        return (rows, child[0]) if child else None

    rows, child = wait_until(chain, 30, what="the plugged child call to be recorded")
    root = next(c for c in rows if c["id"] == child["parent"])
    assert root["name"] == f"{MODULE}.do_something" and child["name"] == f"{MODULE}.do_this"
    assert child["tracking"] == root["id"] == root["tracking"]
    tree = flow("ls", "call", "--id", root["id"], "--tree")
    lines = tree.out.splitlines()
    assert lines[0].startswith(f"{MODULE}.do_something") and "└── " + f"{MODULE}.do_this" in lines[-1], tree.out
    detail = flow_json(flow, "ls", "call", "--id", child["id"], "--result")
    assert detail["result"] == "Do this: TEXT:HI THERE!"
    assert [e["name"] for e in detail["events"]] == ["received", "prerun", "postrun"]


def test_argument_join_fires_once_per_flow_run_without_mixing(flow, agent, repo):
    network(flow, repo, concurrency=2)
    for name, function in (("one", "one"), ("two", "two"), ("add_two", "add_two")):
        add_socket(flow, name, function)
    assert flow("add", "plug", "-n", "p_one", "-s", "one", "-t", "add_two", "-a", "one").code == 0
    assert flow("add", "plug", "-n", "p_two", "-s", "two", "-t", "add_two", "-a", "two").code == 0
    dispatcher = Dispatcher.for_settings(config.load())
    # Wait for the processor to run with the new sockets before timing anything.
    assert dispatcher.send("one", (0,)).get(timeout=120) == 0
    runs = {}
    for i in range(50):
        tracking = str(uuid.uuid4())
        runs[tracking] = i
        first, second = ("one", "two") if i % 2 else ("two", "one")  # arrival order varies
        dispatcher.send(first, (i,), tracking=tracking)
        dispatcher.send(second, (i,), tracking=tracking)
    for tracking, i in runs.items():
        joined = dispatcher.result(naming.join_call_id("add_two", tracking))
        assert joined.get(timeout=120) == i + 10 * i

    def recorded():
        adds = [c for c in calls(flow) if c["name"] == "add_two" and c["state"] == "finished"]
        return adds if len(adds) >= 50 else None

    adds = wait_until(recorded, 60, what="50 add_two calls recorded")
    assert len(adds) == 50 and {c["tracking"] for c in adds} == set(runs)


def test_kill_9_of_a_worker_process_during_a_call(flow, agent, repo):
    network(flow, repo)
    add_socket(flow, "slow", "slow")
    dispatcher = Dispatcher.for_settings(config.load())
    assert dispatcher.send("slow", ("warm",)).get(timeout=120) == "warm"
    result = dispatcher.send("slow", ("survivor",))

    def running_child():
        for row in calls(flow):
            if row["id"] == result.id and row["state"] == "running":
                workers = flow_json(flow, "ls", "workers")
                return psutil.Process(workers[0]["process"]).children()
        return None

    children = wait_until(running_child, 30, 0.05, what="the slow call to start")
    for child in children:  # concurrency 1: the one pool child, busy with our call
        child.kill()
    assert result.get(timeout=60) == "survivor"

    def finished():
        row = next((c for c in calls(flow) if c["id"] == result.id), None)
        return row if row and row["state"] == "finished" else None

    row = wait_until(finished, 30, what="the call to be recorded as finished")
    detail = flow_json(flow, "ls", "call", "--id", row["id"])
    assert detail["deliveries"] == 2
    assert [e["name"] for e in detail["events"]].count("prerun") == 2


@pytest.mark.parametrize("problem", ["repo", "module", "function"])
def test_bad_code_gives_a_clear_status(flow, agent, repo, tmp_path, problem):
    gitrepo = str(tmp_path / "no-such-repo") if problem == "repo" else repo.working_tree_dir
    module = "pyfi.processors.nothere" if problem == "module" else MODULE
    assert flow("add", "queue", "-n", "q").code == 0
    assert flow("add", "processor", "-n", "bad", "-g", gitrepo, "-m", module).code == 0
    function = "no_such_function" if problem == "function" else "do_this"
    assert flow("add", "socket", "-n", "bad.s", "-q", "q", "-pn", "bad", "-t", function).code == 0

    def status():
        if problem == "function":
            sock = flow_json(flow, "ls", "sockets")[0]
            proc = flow_json(flow, "ls", "processors")[0]
            return (sock, proc) if proc["status"] == "error" else None
        proc = flow_json(flow, "ls", "processors")[0]
        return proc if proc["status"] == "error" else None

    found = wait_until(status, 90, what=f"error status for a bad {problem}")
    message = (found[1] if problem == "function" else found)["status_message"]
    expected = {"repo": "no-such-repo", "module": "nothere", "function": "no_such_function"}[problem]
    assert expected in message, message
    waiting = flow("task", "run", "-s", "bad.s", "-d", "1", "--timeout", "1")
    assert waiting.code == 1 and "note:" in waiting.err and expected in waiting.err


def test_stopped_processor_keeps_calls_queued_and_new_commit_runs(flow, agent, repo):
    network(flow, repo)
    dispatcher = Dispatcher.for_settings(config.load())
    assert dispatcher.send(f"{MODULE}.do_this", ("a",)).get(timeout=120) == "Do this: a"
    assert flow("proc", "stop", "-n", "proc1").code == 0
    wait_until(lambda: flow_json(flow, "ls", "processors")[0]["status"] == "stopped", 30, what="processor stopped")
    with pytest.warns(WaitingWarning, match="proc1 is stopped"):
        queued = dispatcher.send(f"{MODULE}.do_this", ("b",))
    time.sleep(2)
    assert not queued.ready()
    sha = commit_change(repo, "pyfi/processors/sample.py",
                        "def do_this(message):\n    return 'v2: ' + str(message)\n\n\ndef do_something(m):\n    return m\n")
    assert flow("update", "processor", "-n", "proc1", "--commit", sha).code == 0
    assert flow("proc", "start", "-n", "proc1").code == 0
    assert queued.get(timeout=120) == "v2: b"
    workers = flow_json(flow, "ls", "workers")
    assert workers[0]["commit"] == sha


def test_processor_wider_than_the_node_runs_without_oversubscribing_it(flow, agent, repo):
    # Was: `-c 5` on a 2-core node stayed pending. Now every processor runs and the node's CPUs
    # bound its *busy* processes: a backlog of calls runs at most 2 at a time, and it says why.
    network(flow, repo, concurrency=5)
    add_socket(flow, "nap", "nap")
    wait_until(lambda: flow_json(flow, "ls", "processors")[0]["status"] == "running", 60, what="running status")
    dispatcher = Dispatcher.for_settings(config.load())
    results = [dispatcher.send("nap", (i, 0.5)) for i in range(12)]
    proc = wait_until(lambda: next((p for p in flow_json(flow, "ls", "processors")
                                    if (p["status_message"] or "").startswith("running: 2 of max 5")), None),
                      30, what="the capped status message")
    assert proc["status"] == "running" and "busy" in proc["status_message"]
    assert [r.get(timeout=60) for r in results] == list(range(12))
    done = wait_until(lambda: (rows := [c for c in calls(flow) if c["name"] == "nap" and c["finished"]])
                      and len(rows) == 12 and rows, 30, what="the 12 calls recorded")
    spans = sorted((c["started"], c["finished"]) for c in done)
    most = max(sum(1 for s, f in spans if s <= start < f) for start, _ in spans)
    assert most == 2, spans  # both cores used, never more


def test_error_plug_and_dead_letter(flow, agent, repo):
    network(flow, repo)
    add_socket(flow, "boom", "boom")
    add_socket(flow, "catch", "catch")
    add_socket(flow, "suicide", "suicide")
    assert flow("add", "plug", "-n", "on_error", "-s", "boom", "-t", "catch", "--type", "ERROR").code == 0
    time.sleep(1.5)
    failed = flow("task", "run", "-s", "boom", "-d", "1", "--timeout", "120")
    assert failed.code == 1 and "ValueError: boom 1" in failed.err and "boom" in failed.err

    def caught():
        rows = [c for c in calls(flow) if c["name"] == "catch" and c["state"] == "finished"]
        return rows[0] if rows else None

    row = wait_until(caught, 60, what="the ERROR plug's call")
    assert flow_json(flow, "ls", "call", "--id", row["id"], "--result")["result"] == "caught ValueError: boom 1"

    dead = flow("task", "run", "-s", "suicide", "-d", "1", "--timeout", "120")
    assert dead.code == 1 and "dead-lettered" in dead.err
    client = redis_client(config.load().backend)
    assert client.llen(naming.DEAD_LETTER_LIST) == 1


def _rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _rabbitmq_answers(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_rabbitmq_broker(flow, services, home, repo, monkeypatch):
    broker = "amqp://guest:guest@127.0.0.1:5672//"
    monkeypatch.setenv("ELASTICCODE_BROKER", broker)
    Dispatcher.forget_all()
    process = AgentProcess(home / "agent-amqp", {**services, "ELASTICCODE_BROKER": broker}).start()
    try:
        queue = f"q{uuid.uuid4().hex[:8]}"  # RabbitMQ queues are shared by every run on this machine
        network(flow, repo, queue=queue, proc=f"p{queue}")
        run = flow("task", "run", "-s", f"{MODULE}.do_this", "-d", '"rabbit"', "--timeout", "120")
        assert run.code == 0 and run.out.strip() == "Do this: rabbit", (run, process.output())
    finally:
        process.stop()


def test_recreated_network_is_still_recorded_and_plug_removal_takes_effect(flow, agent, repo, db_url):
    from sqlalchemy import text

    from elasticcode.db.engine import get_engine

    network(flow, repo)
    assert flow("add", "plug", "-n", "p1", "-s", f"{MODULE}.do_something", "-t", f"{MODULE}.do_this").code == 0
    assert flow("task", "run", "-s", f"{MODULE}.do_this", "-d", '"first"', "--timeout", "120").code == 0
    wait_until(lambda: len(calls(flow)) >= 1, 30, what="first call recorded")
    # Delete and re-create everything: new socket ids under the same names.
    assert flow("delete", "processor", "-n", "proc1").code == 0
    assert flow("delete", "queue", "-n", "pyfi.queue1").code == 0
    network(flow, repo)
    second = flow("task", "run", "-s", f"{MODULE}.do_something", "-d", '"second"', "--timeout", "120")
    assert second.out.strip() == "TEXT:second", second

    def linked():
        with get_engine(db_url).connect() as conn:
            return conn.execute(text(
                "SELECT count(*) FROM call c JOIN socket s ON s.id = c.socket_id WHERE s.name = :n"),
                {"n": f"{MODULE}.do_something"}).scalar()

    assert wait_until(linked, 30, what="the new call linked to the new socket") == 1
    # The plug went with the old sockets: no child call for the second run.
    time.sleep(1.5)
    assert not [c for c in calls(flow) if c["parent"]]


def test_database_outage_delays_provenance_but_loses_none(tmp_path, repo, monkeypatch, bare_flow):
    """Stop the model database mid-run: calls keep flowing, and are recorded once it is back."""
    from elasticcode import embedded
    from elasticcode.db import schema
    from elasticcode.embedded import postgres as embedded_pg
    from elasticcode.embedded.state import load_state

    home = tmp_path / "outage"
    urls = embedded.up(home)
    try:
        schema.init(urls.admin_db)
        schema.enrol(urls.admin_db, urls.app_role)
        env = {"ELASTICCODE_DB": urls.db, "ELASTICCODE_ADMIN_DB": urls.admin_db,
               "ELASTICCODE_SERVICE_DB": embedded.stack.ensure_service_role(home),
               "ELASTICCODE_BROKER": urls.broker, "ELASTICCODE_BACKEND": urls.backend}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        Dispatcher.forget_all()
        flow = bare_flow
        process = AgentProcess(home / "agent", env).start()
        try:
            network(flow, repo)
            dispatcher = Dispatcher.for_settings(config.load())
            assert dispatcher.send(f"{MODULE}.do_this", ("warm",)).get(timeout=120) == "Do this: warm"
            embedded_pg.down(load_state(home)["postgres"], lambda _: None)
            during = [dispatcher.send(f"{MODULE}.do_this", (i,)) for i in range(100)]  # routes come from Redis
            assert [r.get(timeout=60) for r in during] == [f"Do this: {i}" for i in range(100)]
            embedded.up(home)
            ids = {r.id for r in during}

            def recorded():
                rows = [c for c in calls(flow) if c["id"] in ids and c["state"] == "finished"]
                return rows if len(rows) == 100 else None

            wait_until(recorded, 90, what="calls made during the outage to be recorded")
        finally:
            process.stop()
    finally:
        from elasticcode.db.engine import dispose_all

        dispose_all()
        embedded.purge(home)


def test_dead_worker_is_restarted_and_listen_shows_logs(flow, agent, repo, services):
    network(flow, repo)
    dispatcher = Dispatcher.for_settings(config.load())
    assert dispatcher.send(f"{MODULE}.do_this", ("one",)).get(timeout=120) == "Do this: one"
    before = flow_json(flow, "ls", "workers")[0]["process"]
    client = redis_client(services["ELASTICCODE_BROKER"])
    logs = client.pubsub(ignore_subscribe_messages=True)
    logs.subscribe(naming.channel("proc1", "log"))
    psutil.Process(before).kill()  # the worker's main process, not just a pool child

    def restarted():
        rows = flow_json(flow, "ls", "workers")
        return rows[0]["process"] if rows[0]["process"] != before and rows[0]["status"] == "running" else None

    after = wait_until(restarted, 60, what="the agent to restart the worker")
    assert psutil.pid_exists(after)
    assert dispatcher.send(f"{MODULE}.do_this", ("two",)).get(timeout=120) == "Do this: two"

    def log_line():
        message = logs.get_message(timeout=0.5)
        return message if message and b"do_this" in message["data"] else None

    line = wait_until(log_line, 30, 0.01, what="a worker log line on the log channel")
    assert b'"channel": "log"' in line["data"]
    logs.close()


def test_a_plug_applies_to_the_next_call_once_published(flow, agent, repo, services):
    network(flow, repo)
    dispatcher = Dispatcher.for_settings(config.load())
    assert dispatcher.send(f"{MODULE}.do_something", ("warm",)).get(timeout=120) == "TEXT:warm"
    client = redis_client(services["ELASTICCODE_BROKER"])
    before = int(client.get(naming.ROUTES_VERSION_KEY) or 0)
    added = time.monotonic()
    assert flow("add", "plug", "-n", "p1", "-s", f"{MODULE}.do_something", "-t", f"{MODULE}.do_this").code == 0
    wait_until(lambda: int(client.get(naming.ROUTES_VERSION_KEY) or 0) > before, 10, 0.01, what="the agent to publish")
    published = time.monotonic() - added
    first = dispatcher.send(f"{MODULE}.do_something", ("right away",))  # no sleep: the very next call
    assert first.get(timeout=60) == "TEXT:right away"

    def child():
        return [c for c in calls(flow) if c["parent"] == first.id] or None

    assert wait_until(child, 30, what="the plugged call of the very next call")[0]["name"] == f"{MODULE}.do_this"
    assert published < 2.0, f"the agent took {published:.2f}s to publish the new plug"


def test_a_plug_binding_an_argument_the_target_lacks_is_an_error_and_carries_nothing(flow, agent, repo):
    network(flow, repo)
    for name, function in (("one", "one"), ("add_two", "add_two")):
        add_socket(flow, name, function)
    assert flow("add", "plug", "-n", "bad", "-s", "one", "-t", "add_two", "-a", "three").code == 0

    def marked():
        plug = flow_json(flow, "ls", "plugs")[0]
        return plug if plug["status"] == "error" else None

    plug = wait_until(marked, 60, what="the agent to mark the plug")
    assert "'three'" in plug["status_message"] and "add_two(one, two)" in plug["status_message"], plug
    dispatcher = Dispatcher.for_settings(config.load())
    sent = dispatcher.send("one", (1,))
    assert sent.get(timeout=60) == 1
    time.sleep(2)  # a plug that still carried calls would have sent one by now
    assert [c for c in calls(flow) if c["parent"] == sent.id] == []
    assert flow("update", "plug", "-n", "bad", "-a", "one").code == 0
    wait_until(lambda: flow_json(flow, "ls", "plugs")[0]["status"] != "error", 60, what="the fixed plug")


def test_commands_sent_ahead_answer_in_order_error_replies_in_place_and_the_connection_goes_back(redis_base):
    """What a first delivery's prerun round trip relies on (`SentAhead`): the commands apply once
    they are written, before anyone reads; the replies come back in order, a failing command's
    error in its place without losing the ones after it; the connection is then usable again."""
    from elasticcode.runtime.connections import SentAhead

    client = redis_client(redis_base)
    counter, text = f"ec:test:ahead:{uuid.uuid4()}", f"ec:test:ahead:{uuid.uuid4()}"
    client.set(text, "not a number")
    try:
        ahead = SentAhead(client, [("INCR", counter), ("INCR", text), ("INCR", counter), ("GET", text)])
        other = redis_client(redis_base)  # another connection sees the writes before the replies are read
        wait_until(lambda: other.get(counter) == b"2", 5, what="the commands applied")
        replies = ahead.replies()
        assert replies[0] == 1 and replies[2] == 2 and replies[3] == b"not a number"
        assert isinstance(replies[1], Exception) and "not an integer" in str(replies[1])
        assert client.connection_pool._created_connections == 1 and client.incr(counter) == 3  # same connection, in sync
    finally:
        client.delete(counter, text)
