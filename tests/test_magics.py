"""`%flow` in a real IPython shell: listings as DataFrames, one-line UsageErrors."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython import get_ipython
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython


@pytest.fixture(scope="module")
def ip():
    shell = start_ipython() or get_ipython()  # one test shell per process: another module may have started it
    shell.run_line_magic("load_ext", "elasticcode")
    return shell


def test_listing_is_a_dataframe(ip, flow, sample_repo):
    ip.run_line_magic("flow", "add queue -n pyfi.queue1 -t direct")
    ip.user_ns["repo"] = str(sample_repo)
    ip.run_cell("df = %flow ls queues")
    frame = ip.user_ns["df"]
    assert isinstance(frame, pd.DataFrame) and list(frame["name"]) == ["pyfi.queue1"]
    # {var} expands Python variables, the IPython way
    ip.run_line_magic("flow", "add processor -n proc1 -g {repo} -m pyfi.processors.sample")
    assert list(ip.run_line_magic("flow", "ls processors")["gitrepo"]) == [str(sample_repo)]


def test_errors_are_one_line_usage_errors(ip, flow):
    with pytest.raises(UsageError, match="nosuch"):
        ip.run_line_magic("flow", "add socket -n s -q q -pn nosuch -t f")
    with pytest.raises(UsageError, match="No such option"):
        ip.run_line_magic("flow", "ls queues --bogus")
    with pytest.raises(UsageError, match="cannot parse"):
        ip.run_line_magic("flow", "add queue -n 'unclosed")
    assert ip.run_line_magic("flow", "ls queues") is not None  # the shell is still fine


def test_completion_offers_subcommands_and_options():
    from jupyter_ext.completion import candidates

    assert {"add", "ls", "up", "graph"} <= set(candidates(" "))
    assert candidates(" ls proc") == ["processors"]
    assert "--concurrency" in candidates(" add processor --c")


def test_builder_form_adds_and_reports_errors(flow, sample_repo):
    from elasticcode.client import api as client_api
    from jupyter_ext.forms import builder

    client_api.reset_settings()
    form = builder(client_api.default_settings())
    form.kind.value = "queue"
    form.inputs["name"][1].value = "formq"
    assert form.submit() and "formq" in form.message.value
    form.kind.value = "socket"
    for attr, value in (("name", "s"), ("processor", "nosuch"), ("queue", "formq"), ("function", "f")):
        form.inputs[attr][1].value = value
    assert not form.submit() and "nosuch" in form.message.value
    assert [q["name"] for q in __import__("json").loads(flow("--json", "ls", "queues").out)] == ["formq"]


CELL_V1 = '''
def clean(text):
    return text.strip().lower()


def shout(text):
    return text.upper() + "!"


def _helper():
    return None
'''

CELL_V2 = CELL_V1.replace('text.upper() + "!"', 'text.upper() + "!!"')


@pytest.mark.timeout(300)
def test_processor_cell_deploys_and_redeploys(ip, flow, redis_base, home, monkeypatch):
    from runtime_helpers import AgentProcess, wait_until

    from elasticcode.client import api as client_api
    from elasticcode.runtime.connections import redis_client

    redis_client(redis_base).flushdb()
    monkeypatch.setenv("ELASTICCODE_BROKER", redis_base)
    monkeypatch.setenv("ELASTICCODE_BACKEND", redis_base)
    client_api.reset_settings()
    import os

    agent = AgentProcess(home / "agent", {k: os.environ[k] for k in ("ELASTICCODE_DB", "ELASTICCODE_BROKER",
                                                                       "ELASTICCODE_BACKEND")}).start()
    try:
        first = ip.run_cell_magic("flow", "processor textops -c 1", CELL_V1)
        assert first.sockets == ["textops.clean", "textops.shout"] and "_helper" not in first.functions
        assert "textops.shout" in first._repr_html_()
        shout = client_api.Socket(name="textops.shout")
        assert shout("hi") == "HI!"
        again = ip.run_cell_magic("flow", "processor textops -c 1", CELL_V1)
        assert again.commit == first.commit and not again.changed
        second = ip.run_cell_magic("flow", "processor textops -c 1", CELL_V2)
        assert second.commit != first.commit
        queued = [shout.delay(f"x{i}") for i in range(5)]  # sent while the worker switches
        results = [q.get(timeout=120) for q in queued]
        assert all(r in (f"X{i}!", f"X{i}!!") for i, r in enumerate(results))
        assert wait_until(lambda: shout("y") == "Y!!", 60, what="the new commit to serve calls")
        workers = __import__("json").loads(flow("--json", "ls", "workers").out)
        assert workers[0]["commit"] == second.commit
        third = ip.run_cell_magic("flow", "processor textops", "def clean(text):\n    return text\n")
        assert third.removed == ["textops.shout"]
    finally:
        agent.stop()
        client_api.reset_settings()


def test_processor_cell_errors(ip, flow):
    with pytest.raises(UsageError, match="syntax error at line 1"):
        ip.run_cell_magic("flow", "processor broken", "def f(:\n  pass\n")
    with pytest.raises(UsageError, match="no public function"):
        ip.run_cell_magic("flow", "processor empty", "x = 1\n")
    with pytest.raises(UsageError, match="module name"):
        ip.run_cell_magic("flow", "processor Bad-Name", "def f():\n    return 1\n")
    with pytest.raises(UsageError, match="processor NAME"):
        ip.run_cell_magic("flow", "socket x", "def f():\n    return 1\n")
    with pytest.raises(UsageError):
        ip.run_cell_magic("flow", "processor p -c notanumber", "def f():\n    return 1\n")


def test_processor_cell_pushes_to_a_remote(ip, flow, tmp_path):
    import git

    bare = tmp_path / "shared.git"
    git.Repo.init(bare, bare=True)
    published = ip.run_cell_magic("flow", f"processor remote_one --remote {bare}", "def f(x):\n    return x\n")
    assert published.repository == str(bare)
    assert git.Repo(bare).commit("main").hexsha == published.commit
    procs = __import__("json").loads(flow("--json", "ls", "processors").out)
    assert [(p["name"], p["gitrepo"], p["commit"]) for p in procs] == [("remote_one", str(bare), published.commit)]


def test_processor_cell_takes_min_and_node(ip, flow):
    """`--min` and `-h` as on `flow add processor`: `-h localhost` is this machine's node."""
    from elasticcode.runtime.naming import node_name

    ip.run_cell_magic("flow", "processor pinned -c 3 --min 1 -h localhost", "def f(x):\n    return x\n")
    procs = __import__("json").loads(flow("--json", "ls", "processors").out)
    assert [(p["name"], p["concurrency"], p["min_concurrency"], p["hostname"]) for p in procs] == [
        ("pinned", 3, 1, node_name())]
    with pytest.raises(UsageError, match="--min 4"):
        ip.run_cell_magic("flow", "processor pinned -c 3 --min 4", "def f(x):\n    return x\n")
