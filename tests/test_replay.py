"""Replay: a recorded call runs again with its recorded inputs, as a new call linked to it (`replay_of`)."""

from __future__ import annotations

import time
import uuid

import pytest
from runtime_helpers import commit_change, flow_json, make_repo, wait_until

from elasticcode import config
from elasticcode.client import dispatch
from elasticcode.client.api import Socket
from elasticcode.client.dispatch import Dispatcher
from elasticcode.client.handles import replay_call
from elasticcode.client.history import history
from elasticcode.client.replay import running_commits
from elasticcode.errors import ElasticCodeError
from elasticcode.runtime import naming

pytestmark = pytest.mark.timeout(300)

MODULE = "replayed.steps"
PATH = "replayed/steps.py"
V1 = '''
def check(x):
    raise ValueError("bad input " + str(x))


def start(x):
    return x + 1


def mid(x):
    return x * 10


def end(x):
    return x - 1


def one(x):
    return x


def two(x):
    return x * 10


def add_two(one, two):
    return one + two


def echo(*args, **kwargs):
    return [list(args), kwargs]
'''
V2 = V1.replace('raise ValueError("bad input " + str(x))', 'return "ok " + str(x)')


def _network(flow, repo) -> None:
    steps = [("add", "queue", "-n", "rq"),
             ("add", "processor", "-n", "rproc", "-g", repo.working_tree_dir, "-m", MODULE, "-h", "localhost", "-c", "2")]
    for name in ("check", "start", "mid", "end", "one", "two", "add_two", "echo"):
        steps.append(("add", "socket", "-n", name, "-q", "rq", "-pn", "rproc", "-t", name))
    for args in steps:
        result = flow(*args)
        assert result.code == 0, result


def _rows(ids=None, **filters):
    frame = history(**filters)
    return frame if ids is None else frame[frame["id"].isin(ids)]


def _recorded(call_id: str, state: str = "finished") -> dict:
    def found():
        rows = _rows([call_id])
        return rows.iloc[0].to_dict() if len(rows) and rows.iloc[0]["state"] == state else None

    return wait_until(found, 30, what=f"call {call_id} recorded {state}")


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", V1, module=PATH)


def test_failed_call_replayed_on_fixed_code_succeeds_and_history_links_them(flow, agent, repo):
    _network(flow, repo)
    failed = Socket(name="check").delay(7)
    with pytest.raises(ElasticCodeError, match="bad input 7"):
        failed.get(timeout=120)
    original = _recorded(failed.id, "failed")
    assert original["commit"] == repo.head.commit.hexsha

    # At the recorded commit while the workers still run it: the same failure again, linked.
    again = failed.replay()
    with pytest.raises(ElasticCodeError, match="bad input 7"):
        again.get(timeout=60)
    assert _recorded(again.id, "failed")["replay_of"] == failed.id

    # The fix: a new commit, deployed.
    sha = commit_change(repo, PATH, V2)
    assert flow("update", "processor", "-n", "rproc", "--commit", sha).code == 0
    client = Dispatcher.for_settings(config.load()).redis
    wait_until(lambda: running_commits(client, "rproc") == {sha}, 120, what="the workers at the new commit")

    # The recorded commit is gone from the workers: refused with the reason and the two ways out.
    refused = flow("call", "replay", failed.id)
    assert refused.code == 1, refused
    assert "now runs" in refused.err and "--latest-code" in refused.err and sha[:12] in refused.err, refused.err
    assert flow("call", "replay", "not-a-call").code == 1

    done = flow_json(flow, "call", "replay", failed.id, "--latest-code", "--wait", "60")
    assert done["result"] == "ok 7" and done["replay_of"] == failed.id
    replayed = _recorded(done["id"])
    assert replayed["replay_of"] == failed.id and replayed["commit"] == sha and replayed["name"] == "check"
    links = history(replay_of=failed.id)
    assert sorted(links["id"]) == sorted([again.id, done["id"]]) and list(links["state"]) == ["failed", "finished"]
    assert links["replay_of"].dtype == "string" and history()["replay_of"].isna().sum() >= 1


def test_replay_mid_chain_with_downstream_records_a_new_subtree(flow, agent, repo):
    _network(flow, repo)
    for args in (("add", "plug", "-n", "p1", "-s", "start", "-t", "mid"), ("add", "plug", "-n", "p2", "-s", "mid", "-t", "end")):
        assert flow(*args).code == 0
    first = Socket(name="start").delay(1)
    assert first.get(timeout=120) == 2
    chain = first.flow(wait=True)
    assert sorted(chain["name"]) == ["end", "mid", "start"] and len(chain) == 3
    mid = chain[chain["name"] == "mid"].iloc[0]
    assert mid["result"] == 20

    # Without --downstream: the mid call alone, its input being its parent's recorded result.
    alone = replay_call(mid["id"])
    assert alone.get(timeout=60) == 20
    # With --downstream: a new subtree, rooted at the replay, along today's plugs.
    tree = replay_call(mid["id"], downstream=True)
    assert tree.get(timeout=60) == 20
    subtree = tree.flow(wait=True)
    assert sorted(subtree["name"]) == ["end", "mid"] and len(subtree) == 2, subtree
    end = subtree[subtree["name"] == "end"].iloc[0]
    assert end["parent"] == tree.id and end["tracking"] == tree.id and end["result"] == 19
    time.sleep(1.5)  # the replay without --downstream made no `end` call meanwhile
    frame = _rows()
    assert (frame["parent"] == alone.id).sum() == 0
    assert (frame["name"] == "end").sum() == 2  # the original chain's and the subtree's
    assert set(frame.loc[frame["replay_of"] == mid["id"], "id"]) == {alone.id, tree.id}
    assert (frame.loc[frame["id"] == tree.id, "tracking"] == tree.id).all()


def test_inputs_kwargs_joins_and_the_size_cap(flow, agent, repo, monkeypatch):
    _network(flow, repo)
    echoed = Socket(name="echo").delay(1, "two", {"three": [3]}, k={"v": 4.5})
    assert echoed.get(timeout=120) == [[1, "two", {"three": [3]}], {"k": {"v": 4.5}}]
    assert echoed.replay().get(timeout=60) == [[1, "two", {"three": [3]}], {"k": {"v": 4.5}}]

    # A joined call: its inputs came from two calls and are recorded when the last one arrives.
    for args in (("add", "plug", "-n", "j1", "-s", "one", "-t", "add_two", "-a", "one"),
                 ("add", "plug", "-n", "j2", "-s", "two", "-t", "add_two", "-a", "two")):
        assert flow(*args).code == 0
    dispatcher = Dispatcher.for_settings(config.load())
    tracking = str(uuid.uuid4())
    dispatcher.send("one", (3,), tracking=tracking)
    dispatcher.send("two", (4,), tracking=tracking)
    joined_id = naming.join_call_id("add_two", tracking)
    assert dispatcher.result(joined_id).get(timeout=120) == 43
    joined = _recorded(joined_id)
    assert joined["argument"] == "one,two"
    assert replay_call(joined_id).get(timeout=60) == 43

    # Over the cap: nothing recorded but the size, and the replay says why.
    monkeypatch.setattr(dispatch, "INPUTS_LIMIT", 100)
    big = Socket(name="echo").delay("x" * 500)
    big.get(timeout=60)
    small = Socket(name="echo").delay("x")
    small.get(timeout=60)
    with pytest.raises(ElasticCodeError, match=r"cannot be replayed: its arguments were 5\d\d bytes .* over the 100-byte"):
        big.replay()
    assert small.replay().get(timeout=60) == [["x"], {}]
    refused = flow("call", "replay", big.id)
    assert refused.code == 1 and "ELASTICCODE_INPUTS_LIMIT" in refused.err, refused


def test_percent_flow_replay_in_a_notebook(flow, agent, repo):
    pytest.importorskip("IPython")
    from IPython.core.error import UsageError

    from jupyter_ext.magics import run_flow

    _network(flow, repo)
    call = Socket(name="start").delay(41)
    assert call.get(timeout=120) == 42
    handle = run_flow(f"replay {call.id}")
    assert handle.get(timeout=60) == 42 and handle.id != call.id
    assert _recorded(handle.id)["replay_of"] == call.id
    with pytest.raises(UsageError, match="not a call id"):
        run_flow("replay nope")


SEND_AND_EXIT = """
import multiprocessing, os, sys
from elasticcode.client.api import Socket

def send(tag):
    ids = [Socket(name="echo").delay(100 + i, tag=tag).id for i in range(5)]
    print(" ".join(ids), flush=True)

if __name__ == "__main__":
    mode, tag = sys.argv[1:]
    echo = Socket(name="echo")
    echo(0)  # the processor runs: the calls below are not held back by a deployment
    ids = [echo.delay(i, tag=tag).id for i in range(20)]
    # A forked client sends too, with a queued-event thread of its own.
    if mode == "multiprocessing":
        child = multiprocessing.get_context("fork").Process(target=send, args=(tag,))
        child.start()
        child.join()
    else:
        pid = os.fork()
        if pid == 0:
            send(tag)
            os._exit(0) if mode == "os._exit" else sys.exit(0)
        os.waitpid(pid, 0)
    print(" ".join(ids), flush=True)
"""


@pytest.mark.parametrize("mode", ["exit", "multiprocessing", "os._exit"])
def test_a_client_that_exits_right_after_sending_leaves_every_call_recorded_with_its_inputs(flow, agent, repo, mode):
    """The queued event (which carries the inputs a replay needs) goes to Redis from a background
    thread (client/dispatch.py): it is flushed when the process exits, also a `multiprocessing`
    child (which skips atexit), and a forked child sends its own. Only a bare os._exit right after
    sending may leave the last calls without inputs; they are still recorded from the worker's events."""
    import os
    import subprocess
    import sys

    _network(flow, repo)
    tag = uuid.uuid4().hex
    done = subprocess.run([sys.executable, "-c", SEND_AND_EXIT, mode, tag], env=dict(os.environ), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    child_ids, parent_ids = (line.split() for line in done.stdout.split("\n") if line.strip())
    assert len(parent_ids) == 20 and len(child_ids) == 5
    for call_id in parent_ids + child_ids:
        _recorded(call_id)
    from elasticcode.db import model as m
    from elasticcode.db.engine import session_scope

    with session_scope(config.load().require_db()) as session:
        rows = {str(call.id): call for call in session.query(m.Call).filter(m.Call.id.in_(parent_ids + child_ids))}
        assert {call.state for call in rows.values()} == {"finished"} and len(rows) == 25
        with_inputs = {call_id for call_id, call in rows.items() if call.inputs and "args" in call.inputs}
    assert set(parent_ids) <= with_inputs  # every call of the process that exited normally
    if mode != "os._exit":
        assert set(child_ids) <= with_inputs
    assert replay_call(parent_ids[-1]).get(timeout=60) == [[19], {"tag": tag}]
