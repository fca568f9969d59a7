"""Results that wait for you, with a real agent, worker, PostgreSQL and Redis: what `.get()` returned
is in the history at once, `handle.flow(wait=True)` holds what plugs made downstream (an argument
join's result included), batches as in Dask, and `df = %flow ls calls` holds every call."""

from __future__ import annotations

import pandas as pd
import pytest
from runtime_helpers import make_repo

pytestmark = pytest.mark.timeout(300)

MODULE = "pyfi.processors.sample"


@pytest.fixture
def network(flow, tmp_path):
    """A processor with do_something -> do_this (a plug) and one, two -> add_two (an argument join)."""
    repo = make_repo(tmp_path / "repo")
    steps = [("add", "queue", "-n", "q"),
             ("add", "processor", "-n", "proc1", "-g", repo.working_tree_dir, "-m", MODULE, "-c", "2")]
    steps += [("add", "socket", "-n", name, "-q", "q", "-pn", "proc1", "-t", name)
              for name in ("do_something", "do_this", "one", "two", "add_two")]
    steps += [("add", "plug", "-n", "chain", "-s", "do_something", "-t", "do_this"),
              ("add", "plug", "-n", "p_one", "-s", "one", "-t", "add_two", "-a", "one"),
              ("add", "plug", "-n", "p_two", "-s", "two", "-t", "add_two", "-a", "two")]
    for args in steps:
        result = flow(*args)
        assert result.code == 0, result


def test_results_wait_for_you(network, agent):
    import elasticcode
    from elasticcode import Socket, parallel

    do_something = Socket(name="do_something")
    assert do_something("warm") == "TEXT:warm"  # the first call waits for the processor to deploy

    call = do_something.delay("now")
    assert call.get(timeout=60) == "TEXT:now"
    # Read-your-writes: no sleep between .get() and the readers.
    rows = elasticcode.history(root=call.id)
    assert list(rows.loc[rows["id"] == call.id, "state"]) == ["finished"]
    assert call.tree()["call"]["state"] == "finished"
    assert list(call.to_frame()["id"]).count(call.id) == 1

    whole = call.flow(wait=True)
    assert sorted(whole["name"]) == ["do_something", "do_this"]
    child = whole[whole["name"] == "do_this"].iloc[0]
    assert child["parent"] == call.id and child["state"] == "finished" and child["result"] == "Do this: TEXT:now"

    # The workflow notebook's argument join: the workflow's own result, then what the plugs made of it.
    run = parallel([Socket(name="one").p(4), Socket(name="two").p(5)])()
    assert run.get(timeout=60) == [4, 50]
    recorded = run.to_frame()
    assert sorted(recorded.loc[recorded["name"].isin(["one", "two"]), "state"]) == ["finished", "finished"]
    flow_run = run.flow(wait=True)
    adds = flow_run[flow_run["name"] == "add_two"]
    assert len(adds) == 1 and adds["state"].iloc[0] == "finished" and adds["result"].iloc[0] == 54
    assert set(adds["argument"].iloc[0].split(",")) == {"one", "two"}


def test_batches_and_every_listed_call(network, agent):
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    import elasticcode
    from elasticcode import Socket
    from elasticcode.errors import ElasticCodeError

    one = Socket(name="one")
    assert one(0) == 0  # deployed
    handles = [one.delay(i) for i in range(103)]
    elasticcode.progress(handles)  # a text bar outside a kernel; returns once all are done
    assert all(h.ready() for h in handles)
    assert sorted(h.get() for h in elasticcode.as_completed(handles)) == list(range(103))
    assert elasticcode.gather(handles) == list(range(103))
    with pytest.raises(ElasticCodeError, match="errors="):
        elasticcode.gather(handles, errors="ignore")

    boom = Socket(name="one").delay()  # one() without its argument fails in the worker
    mixed = [one.delay(1), boom, one.delay(2)]
    assert elasticcode.gather(mixed, errors="skip") == [1, 2]
    returned = elasticcode.gather(mixed, errors="return")
    assert returned[0] == 1 and isinstance(returned[1], ElasticCodeError) and returned[2] == 2
    with pytest.raises(ElasticCodeError, match="failed"):
        elasticcode.gather(mixed)
    assert [h.failed() for h in mixed] == [False, True, False]

    # 1 + 103 + 3 calls so far, all made by this test: the frame holds all 107, the print one page.
    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "elasticcode")
    shell.run_cell("df = %flow ls calls")
    frame = shell.user_ns["df"]
    assert isinstance(frame, pd.DataFrame) and len(frame) == 107
    assert list(frame.columns[:5]) == ["name", "state", "started", "duration", "worker"]
    assert len(shell.run_line_magic("flow", "ls calls -r 5")) == 5  # asked for a page: a page


def test_a_flow_run_is_complete_only_once_its_plugs_calls_exist():
    """What handle.flow(wait=True) waits for, on recorded rows: open calls, a plug's call, a join's call."""
    from datetime import datetime, timedelta, timezone

    from elasticcode.client.flowrun import PlugInfo, missing
    from elasticcode.runtime.naming import join_call_id

    root, t0 = "11111111-1111-1111-1111-111111111111", datetime(2026, 1, 1, tzinfo=timezone.utc)
    plugs = [PlugInfo("chain", "a", "b", None, "RESULT", t0), PlugInfo("oops", "a", "c", None, "ERROR", t0),
             PlugInfo("p_one", "one", "add", "one", "RESULT", t0), PlugInfo("p_two", "two", "add", "two", "RESULT", t0),
             PlugInfo("later", "a", "d", None, "RESULT", t0 + timedelta(hours=1))]  # added after the call started

    def row(id_, name, state, parent=None):
        return {"id": id_, "name": name, "state": state, "parent": parent, "started": pd.Timestamp(t0 + timedelta(minutes=1))}

    frame = pd.DataFrame([row(root, "a", "finished"), row("one-1", "one", "finished", root), row("two-1", "two", "running", root)])
    lacking = missing(frame, plugs, root)
    assert len(lacking) == 2 and "two (two-1) is running" in lacking[0] and "plug chain" in lacking[1]
    frame = pd.DataFrame([row(root, "a", "finished"), row("b-1", "b", "finished", root),
                          row("one-1", "one", "finished", root), row("two-1", "two", "finished", root)])
    assert missing(frame, plugs, root) == ["the argument join of add (one, two) has not started"]
    joined = row(join_call_id("add", root), "add", "finished", "two-1")
    assert missing(pd.concat([frame, pd.DataFrame([joined])], ignore_index=True), plugs, root) == []


def test_a_wait_says_what_it_waits_for_and_ends_amber(network, services, db_url, capsys):
    """A call to a stopped processor: the wait says why nothing moves, and its end says the call goes on."""
    from sqlalchemy import text

    from elasticcode import Socket
    from elasticcode.client.dispatch import WaitingWarning
    from elasticcode.db.engine import get_engine
    from elasticcode.errors import ElasticCodeError

    with get_engine(db_url).begin() as conn:
        conn.execute(text("UPDATE processor SET status = 'stopped' WHERE name = 'proc1'"))
    with pytest.warns(WaitingWarning, match="proc1 is stopped"):
        handle = Socket(name="one").delay(1)
    with pytest.raises(ElasticCodeError, match="not finished after 4s: it keeps running"):
        handle.wait_interactive(timeout=4)
    err = capsys.readouterr().err
    assert "waiting: processor proc1 is stopped; the call waits in its queue" in err
    assert err.rstrip().endswith("not finished after 4s: still queued or running") and "failed" not in err
