"""The flow graph widget, live call states and call-tree drawings, against real PostgreSQL, Redis and agents."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
from runtime_helpers import AgentProcess, make_repo, wait_until
from sqlalchemy import text

from elasticcode.catalog.calls import call_tree
from elasticcode.config import Settings
from elasticcode.db.engine import get_engine, session_scope
from elasticcode.runtime.connections import redis_client
from elasticcode.runtime.naming import node_name
from jupyter_ext.calltree import call_tree_widget
from jupyter_ext.graph import FlowGraph, show_graph
from jupyter_ext.live import LiveStates, StateTally

pytestmark = pytest.mark.timeout(120)
MODULE = "pyfi.processors.sample"


@pytest.fixture
def settings(db_url, redis_base) -> Settings:
    return Settings(db=db_url, broker=redis_base, backend=redis_base)


def ok(flow, *args, **kwargs):
    result = flow(*args, **kwargs)
    assert result.code == 0, result
    return result


@pytest.fixture
def network(flow, sample_repo):
    """Two processors, three sockets, a RESULT plug bound to an argument and an ERROR plug."""
    ok(flow, "add", "queue", "-n", "q1")
    for proc in ("proc1", "proc2"):
        ok(flow, "add", "processor", "-n", proc, "-g", str(sample_repo), "-m", MODULE, "-c", "1")
    ok(flow, "add", "socket", "-n", "something", "-q", "q1", "-pn", "proc1", "-t", "do_something")
    ok(flow, "add", "socket", "-n", "this", "-q", "q1", "-pn", "proc1", "-t", "do_this")
    ok(flow, "add", "socket", "-n", "other", "-q", "q1", "-pn", "proc2", "-t", "do_this")
    ok(flow, "add", "plug", "-n", "p1", "-s", "something", "-t", "this", "-a", "message")
    ok(flow, "add", "plug", "-n", "p2", "-s", "this", "-t", "other", "--type", "ERROR")
    return flow


def by_name(graph: FlowGraph) -> dict[str, object]:
    return {n.data["name"]: n for n in graph.cyto.graph.nodes}


def event(state: str, call: str, socket: str, processor: str) -> tuple[str, str]:
    """A call event exactly as kernel_agent's recorder publishes it."""
    body = {"channel": "task", "state": state, "call": call, "socket": socket,
            "date": datetime.now(timezone.utc).isoformat(), "room": processor}
    if state == "failure":
        body["error"] = "ValueError: boom"
    return f"ec.{processor}.task", json.dumps(body)


def test_graph_has_processors_sockets_and_plugs_and_refresh_adds(network, settings):
    graph = FlowGraph(settings)
    nodes = by_name(graph)
    assert set(nodes) == {"proc1", "proc2", "something", "this", "other"}
    procs = {n: nodes[n].data["id"] for n in ("proc1", "proc2")}
    assert all("processor" in nodes[p].classes for p in procs)
    assert {s: nodes[s].data["parent"] for s in ("something", "this", "other")} == {
        "something": procs["proc1"], "this": procs["proc1"], "other": procs["proc2"]}
    assert nodes["proc1"].data["label"] == "proc1\nready · concurrency 1"
    edges = {e.data["name"]: e for e in graph.cyto.graph.edges}
    assert set(edges) == {"p1", "p2"}
    ids = {name: node.data["id"] for name, node in nodes.items()}
    assert (edges["p1"].data["source"], edges["p1"].data["target"]) == (ids["something"], ids["this"])
    assert edges["p1"].classes.split()[0] == "result" and edges["p1"].data["label"] == "message"
    assert edges["p2"].classes.split()[0] == "error" and edges["p2"].data["label"] == ""
    assert any(s["selector"] == "edge.error" and s["style"]["line-style"] == "dashed" for s in graph.cyto.cytoscape_style)

    ok(network, "add", "socket", "-n", "more", "-q", "q1", "-pn", "proc2", "-t", "do_something")
    ok(network, "delete", "plug", "-n", "p2")
    graph.refresh()
    after = by_name(graph)
    assert after["more"].data["parent"] == procs["proc2"]
    assert all(after[n] is nodes[n] for n in nodes)  # stable ids: existing elements are kept, not rebuilt
    assert [e.data["name"] for e in graph.cyto.graph.edges] == ["p1"]
    graph.close()


def test_graph_of_one_flow_only(network, settings, db_url):
    with get_engine(db_url).begin() as conn:
        flow_id = conn.execute(text("INSERT INTO flow (name) VALUES ('etl') RETURNING id")).scalar()
        conn.execute(text("UPDATE processor SET flow_id = :f WHERE name = 'proc2'"), {"f": flow_id})
    graph = FlowGraph(settings, flow="etl")
    assert set(by_name(graph)) == {"proc2", "other"} and graph.cyto.graph.edges == []  # plug p2 leaves the flow
    with pytest.raises(Exception, match="flow 'nosuch' does not exist"):
        FlowGraph(settings, flow="nosuch")


def test_live_burst_is_batched(network, settings):
    graph = FlowGraph(settings).start_live()
    messages = []
    for socket, proc, calls, states in (("this", "proc1", 100, ("queued", "received", "prerun", "postrun")),
                                        ("something", "proc1", 20, ("queued", "received", "prerun", "failure")),
                                        ("other", "proc2", 10, ("queued", "prerun"))):
        for _ in range(calls):
            call = str(uuid.uuid4())
            messages += [event(state, call, socket, proc) for state in states]
    assert len(messages) == 500
    client = redis_client(settings.backend)
    started = time.monotonic()
    pipe = client.pipeline(transaction=False)
    for channel, body in messages:
        pipe.publish(channel, body)
    pipe.execute()

    def settled():
        nodes = by_name(graph)
        return nodes["this"].classes == "socket done" and "✓100" in nodes["this"].data["label"] and \
            nodes["something"].classes == "socket failed" and nodes["other"].classes == "socket running"

    wait_until(settled, 10.0, 0.02, "the burst to show in the graph")  # ~0.3 s when the machine is quiet
    elapsed = time.monotonic() - started
    nodes = by_name(graph)
    assert nodes["this"].data["label"] == "this\n⋯0 ▶0 ✓100 ✗0"
    assert nodes["something"].data["label"] == "something\n⋯0 ▶0 ✓0 ✗20"
    assert nodes["other"].data["label"] == "other\n⋯0 ▶10 ✓0 ✗0"
    assert graph.live.tally.absorbed == 500
    print(f"\n500-event burst shown after {elapsed:.2f}s in {graph.applied} widget batches")
    assert graph.applied <= 2 + elapsed * 4 and graph.applied < 20, graph.applied  # batches, not 500 updates
    assert graph.stop_live() and not graph.live.running


def test_live_absorbs_thousands_of_events_a_second(settings, redis_base):
    batches = []
    live = LiveStates(settings.backend, lambda changed: batches.append(len(changed)), interval=0.25).start()
    client, total = redis_client(redis_base), 20_000
    pipe = client.pipeline(transaction=False)
    for i in range(total):
        pipe.publish("ec.bench.task", json.dumps({"state": "postrun", "call": f"c{i}", "socket": f"s{i % 50}", "room": "bench"}))
    started = time.monotonic()
    pipe.execute()
    wait_until(lambda: live.tally.absorbed == total, 30, 0.05, "all events absorbed")
    elapsed = time.monotonic() - started
    assert live.stop()
    print(f"\nabsorbed {total} events in {elapsed:.2f}s ({total / elapsed:.0f}/s) in {len(batches)} batches")
    assert len(batches) <= 2 + elapsed * 4
    assert sum(s.finished for s in live.tally.sockets.values()) == total


def test_tally_moves_calls_between_states_in_any_order():
    tally = StateTally()
    for state in ("queued", "prerun", "received", "failure", "postrun"):  # late 'received', retry succeeded
        tally.add({"state": state, "call": "c1", "socket": "s"})
    tally.add({"state": "bogus", "call": "c2", "socket": "s"})
    state = tally.take_dirty()["s"]
    assert (state.queued, state.running, state.finished, state.failed, state.css_class) == (0, 0, 1, 0, "done")
    assert tally.take_dirty() == {}


def test_stop_live_joins_thread_closes_pubsub_and_close_stops_it(network, settings):
    client = redis_client(settings.backend)
    db = client.connection_pool.connection_kwargs.get("db", 0)

    def subscribers() -> int:
        return sum(1 for c in client.client_list() if int(c.get("psub", 0)) and int(c.get("db", -1)) == db)

    before = subscribers()
    graph = FlowGraph(settings).start_live()
    thread = graph.live._thread
    assert thread.is_alive() and subscribers() == before + 1
    assert graph.stop_live(5)
    assert not thread.is_alive() and thread not in threading.enumerate()
    wait_until(lambda: subscribers() == before, 5, 0.1, "the pubsub connection to close")

    graph.start_live()
    thread = graph.live._thread
    graph.close()  # closing the widget ends the thread too
    assert not thread.is_alive()


def big_network(db_url: str, processors: int, per_processor: int) -> None:
    """Rows written with the ORM directly: `flow add` per socket would time the CLI, not the graph."""
    from elasticcode.db import model as m

    with session_scope(db_url) as session:
        queue = m.Queue(name="bigq")
        session.add(queue)
        previous = None
        for p in range(processors):
            proc = m.Processor(name=f"bp{p}", module=MODULE, gitrepo="/srv/git/x", concurrency=1)
            session.add(proc)
            for i in range(per_processor):
                task = m.Task(name=f"t{p}_{i}", module=MODULE, function="do_this")
                socket = m.Socket(name=f"s{p}_{i}", processor=proc, queue=queue, task=task)
                session.add(socket)
                if previous is not None:
                    session.add(m.Plug(name=f"pl{p}_{i}", source=previous, target=socket))
                previous = socket


def test_graph_of_two_hundred_sockets_builds_and_refreshes_quickly(settings, db_url):
    big_network(db_url, 5, 40)
    started = time.perf_counter()
    graph = FlowGraph(settings)
    built = time.perf_counter() - started
    started = time.perf_counter()
    graph.refresh()
    refreshed = time.perf_counter() - started
    print(f"\n200 sockets, 199 plugs: built in {built:.2f}s, unchanged refresh in {refreshed:.2f}s")
    assert len(graph.cyto.graph.nodes) == 205 and len(graph.cyto.graph.edges) == 199
    assert built < 10 and refreshed < 5
    graph.close()


def test_click_shows_recent_calls_and_processor_status(network, settings, db_url):
    graph = FlowGraph(settings)
    ids = {name: node.data["id"] for name, node in by_name(graph).items()}
    calls = [str(uuid.uuid4()) for _ in range(3)]
    with get_engine(db_url).begin() as conn:
        for i, call in enumerate(calls):
            conn.execute(text("INSERT INTO call (id, name, state, processor, started, duration, worker, error, created) "
                              "VALUES (:id, 'this', :state, 'proc1', now(), 0.25, 'w1', :error, now() + make_interval(secs => :i))"),
                         {"id": call, "state": "failed" if i == 2 else "finished", "i": i,
                          "error": "<script>alert(1)</script>" if i == 2 else None})
    graph.on_node_click({"data": {"id": ids["this"]}, "position": {"x": 1, "y": 2}})
    panel = graph.details.value
    assert "<table" in panel and "latest 3 calls" in panel and all(c[:8] in panel for c in calls)
    assert panel.index(calls[2][:8]) < panel.index(calls[0][:8])  # newest first
    assert "<script>" not in panel and "&lt;script&gt;" in panel, panel
    graph.on_node_click({"data": {"id": ids["other"]}})
    assert "no calls recorded yet" in graph.details.value
    graph.on_node_click({"data": {"id": ids["proc1"]}})
    assert "proc1" in graph.details.value and "ready" in graph.details.value and "concurrency" in graph.details.value


def tree(call_id: str, state: str, children=()) -> dict:
    return {"call": {"id": call_id, "name": f"{MODULE}.{call_id}", "state": state}, "children": list(children)}


def test_call_tree_widget_three_levels_from_recorded_calls(settings, db_url):
    root, a, b, c = (str(uuid.uuid4()) for _ in range(4))
    with get_engine(db_url).begin() as conn:
        for call, parent, state, i in ((root, None, "finished", 0), (a, root, "finished", 1), (b, root, "failed", 2),
                                       (c, a, "running", 3)):
            conn.execute(text("INSERT INTO call (id, name, state, tracking, parent, created) "
                              "VALUES (:id, :name, :state, :root, :parent, now() + make_interval(secs => :i))"),
                         {"id": call, "name": f"{MODULE}.f{i}", "state": state, "root": root, "parent": parent, "i": i})
    with session_scope(db_url) as session:
        nested = call_tree(session, root)
    widget = call_tree_widget(nested)
    nodes = {n.data["id"]: n for n in widget.graph.nodes}
    assert set(nodes) == {root, a, b, c}
    assert (nodes[root].classes, nodes[b].classes, nodes[c].classes) == ("finished", "failed", "running")
    assert nodes[c].data["label"] == f"f3\n{c[:8]}"
    assert {(e.data["source"], e.data["target"]) for e in widget.graph.edges} == {(root, a), (root, b), (a, c)}
    assert widget.cytoscape_layout["name"] == "breadthfirst" and widget.cytoscape_layout["roots"] == [root]


def test_call_tree_widget_caps_a_thousand_nodes():
    nodes = [tree("n0", "finished")]
    for i in range(1, 1000):
        child = tree(f"n{i}", "finished" if i % 7 else "failed")
        nodes[(i - 1) // 3]["children"].append(child)
        nodes.append(child)
    widget = call_tree_widget(nodes[0])
    drawn = widget.graph.nodes
    assert len(drawn) <= 300 and len(widget.graph.edges) == len(drawn) - 1
    more = [n for n in drawn if n.classes == "more"]
    assert more and all(n.data["label"].startswith("+") for n in more)
    hidden = sum(int(n.data["label"].split()[0][1:]) for n in more)
    assert len(drawn) - len(more) + hidden == 1000  # every call is drawn or counted
    chain = nodes[0]
    for i in range(1, 1000):  # a 1000-deep chain: no recursion limit, one summary node
        chain = tree(f"d{i}", "finished", [chain])
    assert len(call_tree_widget(chain).graph.nodes) == 300



def test_live_graph_follows_real_calls_of_a_real_agent(flow, services, home, tmp_path, settings):
    repo = make_repo(tmp_path / "repo")
    ok(flow, "add", "queue", "-n", "q1")
    ok(flow, "add", "processor", "-n", "proc1", "-g", repo.working_tree_dir, "-m", MODULE, "-h", "localhost", "-c", "1")
    ok(flow, "add", "socket", "-n", "this", "-q", "q1", "-pn", "proc1", "-t", "do_this")
    ok(flow, "add", "socket", "-n", "boom", "-q", "q1", "-pn", "proc1", "-t", "boom")
    graph = show_graph(settings)
    assert graph.live.running
    agent = AgentProcess(home / "agent", services).start()
    try:
        run = flow("task", "run", "-s", "this", "--data", "['x']", "--timeout", "90")
        assert run.code == 0 and run.out.strip() == "Do this: ['x']", (run, agent.output()[-2000:])
        flow("task", "run", "-s", "boom", "--data", "1", "--timeout", "30")
        wait_until(lambda: by_name(graph)["this"].classes == "socket done" and by_name(graph)["boom"].classes == "socket failed",
                   10, 0.1, "real call events to colour the graph")
        assert "✓1" in by_name(graph)["this"].data["label"] and "✗1" in by_name(graph)["boom"].data["label"]
        # The processor's box shows its processes on the agent's node (busy/pool), from the published figures.
        node = node_name()  # the agent's (AgentProcess's default)
        wait_until(lambda: f"{node} 0/" in by_name(graph)["proc1"].data["label"], 10, 0.2, "processes per node in the graph")
    finally:
        graph.close()
        agent.stop()
    assert not graph.live.running


def test_live_graph_in_a_real_kernel_sends_few_widget_messages(network, settings):
    """The live thread's widget updates reach the front end through a real ipykernel, batched."""
    import queue

    from jupyter_client.manager import start_new_kernel

    manager, kernel = start_new_kernel(kernel_name="python3")
    try:
        setup = (f"from elasticcode.config import Settings\nfrom jupyter_ext.graph import FlowGraph\n"
                 f"g = FlowGraph(Settings(db={settings.db!r}, broker={settings.broker!r}, backend={settings.backend!r}))"
                 f".start_live()\nids = {{n.data['name']: n for n in g.cyto.graph.nodes}}")
        assert kernel.execute_interactive(setup, timeout=60)["content"]["status"] == "ok"
        while True:  # drop the messages that built the graph
            try:
                kernel.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                break
        client = redis_client(settings.backend)
        pipe = client.pipeline(transaction=False)
        for i in range(125):
            for state in ("queued", "received", "prerun", "postrun"):
                pipe.publish(*event(state, f"call-{i}", "this", "proc1"))
        pipe.execute()
        started = time.monotonic()
        reply = kernel.execute_interactive("1 + 1", timeout=10, output_hook=lambda _msg: None)  # the kernel answers during the burst
        latency = time.monotonic() - started
        updates, deadline = [], time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                msg = kernel.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            if msg["msg_type"] == "comm_msg" and msg["content"]["data"].get("method") == "update":
                updates.append(msg["content"]["data"]["state"])
        labels = [u["data"]["label"] for u in updates if "data" in u]
        assert reply["content"]["status"] == "ok" and latency < 3.0, latency  # ~10 ms when quiet
        assert labels and labels[-1] == "this\n⋯0 ▶0 ✓125 ✗0", labels
        assert len(updates) <= 8, len(updates)  # one message per batch, not one per event
        stop = kernel.execute_interactive("assert g.stop_live(); assert not g.live.running", timeout=10)
        assert stop["content"]["status"] == "ok"
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)


def test_show_graph_without_redis_still_draws_and_says_why(network, db_url):
    graph = show_graph(Settings(db=db_url, broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0"))
    assert len(graph.cyto.graph.nodes) == 5 and graph.live is None
    assert "live states off" in graph.status.value
    graph.close()


def test_layout_fills_the_box_with_readable_labels_at_ten_processors():
    from jupyter_ext.graph_elements import MIN_ZOOM, processor_element
    from jupyter_ext.graph_layout import BOX, FONT_PX, positions

    procs = {f"p{i}": processor_element(f"p{i}", {"name": f"ten{i:02d}", "status": "running", "concurrency": 1,
                                                  "processes": "node 0/1"})[0]["label"] for i in range(10)}
    sockets = {f"s{i}{j}": (f"p{i}", f"ten{i:02d}.{f}\n⋯0 ▶0 ✓12 ✗0") for i in range(10)
               for j, f in enumerate(("do_something", "do_this"))}
    plugs = [(f"s{i + 1}0", f"s{i}1") for i in range(9)]  # p9 feeds p8 ... feeds p0
    placed, zoom = positions(procs, sockets, plugs)
    assert set(placed) == set(sockets)  # processors with sockets take their sockets' box
    assert FONT_PX * zoom >= 10 and zoom >= MIN_ZOOM, zoom
    xs, ys = [x for x, _ in placed.values()], [y for _, y in placed.values()]
    width, height = max(xs) - min(xs), max(ys) - min(ys)
    assert width / height > 1.5 and width * zoom > 0.6 * BOX[0]  # shaped like the box, not one tall column
    assert placed["s90"][0] < placed["s01"][0] or placed["s90"][1] < placed["s01"][1]  # sources first

    # Twenty: the box grows rather than the labels shrink.
    from jupyter_ext.graph_layout import BOX_MARGIN, widget_height

    procs20 = {f"q{i}": f"twenty{i:02d}\nrunning · concurrency 1" for i in range(20)}
    sockets20 = {f"t{i}{j}": (f"q{i}", f"twenty{i:02d}.f{j}\n⋯0 ▶0 ✓1 ✗0") for i in range(20) for j in range(2)}
    height, placed20 = widget_height(procs20, sockets20, [])
    _, zoom20 = positions(procs20, sockets20, [], (BOX[0], height - BOX_MARGIN))
    assert height > 520 and FONT_PX * zoom20 >= 11 and len(placed20) == 40, (height, zoom20)
    assert widget_height(procs, sockets, plugs)[0] == 520  # ten still fit the usual box


def recent_call(db_url: str, socket: str, processor: str, state: str, age: float = 0.0, call: str | None = None) -> str:
    call = call or str(uuid.uuid4())
    with get_engine(db_url).begin() as conn:
        conn.execute(text("INSERT INTO call (id, name, state, processor, created, lastupdated) VALUES "
                          "(:id, :name, :state, :proc, now() - make_interval(secs => :age), now() - make_interval(secs => :age))"),
                     {"id": call, "name": socket, "state": state, "proc": processor, "age": age})
    return call


def test_notebook_scope_shows_this_notebooks_and_recently_active_processors(network, settings, db_url):
    from jupyter_ext import notebook

    notebook.PROCESSORS.clear()
    graph = FlowGraph(settings, scope="notebook")
    assert set(by_name(graph)) == set() and "2 other processors" in graph.scope_note.value
    notebook.PROCESSORS.add("proc1")  # published from this kernel
    graph.refresh()
    assert set(by_name(graph)) == {"proc1", "something", "this"} and "1 other processor " in graph.scope_note.value
    recent_call(db_url, "other", "proc2", "finished")  # proc2 was active a moment ago
    graph.refresh()
    assert set(by_name(graph)) == {"proc1", "proc2", "something", "this", "other"} and graph.scope_note.value == ""
    assert all(dict(n.position) for n in graph.cyto.graph.nodes if n.data["kind"] == "socket")  # preset positions
    graph.close()
    notebook.PROCESSORS.clear()
    with pytest.raises(Exception, match="scope 'mine'"):
        FlowGraph(settings, scope="mine")


def test_counts_start_from_history_and_move_with_live_events(network, settings, db_url):
    for _ in range(3):
        recent_call(db_url, "this", "proc1", "finished", age=120)
    recent_call(db_url, "this", "proc1", "failed", age=120)
    running = recent_call(db_url, "this", "proc1", "running", age=60)
    just_done = recent_call(db_url, "this", "proc1", "finished", age=1)  # its live event may still come
    graph = FlowGraph(settings).start_live()
    label = lambda: by_name(graph)["this"].data["label"]  # noqa: E731
    wait_until(lambda: label() == "this\n⋯0 ▶1 ✓4 ✗1", 10, 0.05, "the recorded totals")
    assert "calls counted since" in graph.period.value
    pipe = redis_client(settings.backend).pipeline(transaction=False)
    for channel, body in (event("postrun", running, "this", "proc1"), event("postrun", just_done, "this", "proc1"),
                          event("queued", str(uuid.uuid4()), "this", "proc1")):
        pipe.publish(channel, body)
    pipe.execute()
    wait_until(lambda: label() == "this\n⋯1 ▶0 ✓5 ✗1", 10, 0.05, "live events on top, none counted twice")
    graph.close()


def test_processor_status_is_followed_live(network, settings, db_url):
    graph = FlowGraph(settings).start_live()
    assert by_name(graph)["proc1"].data["label"].startswith("proc1\nready")
    with get_engine(db_url).begin() as conn:
        conn.execute(text("UPDATE processor SET status = 'stopped' WHERE name = 'proc1'"))
    wait_until(lambda: by_name(graph)["proc1"].data["label"].startswith("proc1\nstopped"), 10, 0.1,
               "the stopped status without pressing refresh")
    assert "stopped" in by_name(graph)["proc1"].classes.split()
    graph.close()
