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


def test_adding_again_is_unchanged_and_a_change_names_the_update(ip, flow, capsys):
    ip.run_line_magic("flow", "add queue -n rerun.q")
    capsys.readouterr()
    ip.run_line_magic("flow", "add queue -n rerun.q")  # a notebook run twice
    assert capsys.readouterr().out.strip() == "queue rerun.q unchanged"
    with pytest.raises(UsageError) as refused:
        ip.run_line_magic("flow", "add queue -n rerun.q -t fanout --transient")
    message = str(refused.value)
    assert "already exists with qtype 'direct', not 'fanout' (and 1 more field)" in message
    assert "`%flow update queue -n rerun.q --type fanout --transient`" in message  # the notebook's form of the hint
    shell = flow("add", "queue", "-n", "rerun.q", "-t", "fanout")
    assert shell.code == 1 and "`flow update queue -n rerun.q --type fanout`" in shell.err  # the shell's form
    assert flow("add", "queue", "-n", "rerun.q", "-t", "DIRECT").code == 0  # choices match in any case
    assert [q["qtype"] for q in __import__("json").loads(flow("--json", "ls", "queues").out)] == ["direct"]


def test_errors_show_one_line_and_the_traceback_on_tb(ip, services, capsys):
    capsys.readouterr()
    result = ip.run_cell('from elasticcode import Socket\nSocket(name="mine.cube")(1)')
    assert type(result.error_in_exec).__name__ == "NotFound"  # the cell still fails
    shown = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(shown) == 1, shown  # no frames of the library
    assert "NotFound" in shown[0] and "'mine.cube' does not exist" in shown[0]
    assert "`%flow ls sockets`" in shown[0] and "%tb" in shown[0]  # the hint in the notebook's form
    ip.run_line_magic("tb", "")
    full = capsys.readouterr().out
    assert "dispatch.py" in full and "mine.cube" in full  # the whole traceback, one magic away


def test_load_ext_defers_heavy_imports():
    """`%load_ext elasticcode` registers the magic and imports none of the libraries it later uses
    (they cost 1-2 s together); the time itself is measured, not asserted (README: about 0.01 s)."""
    import subprocess
    import sys

    script = ("import sys, time\nfrom IPython.core.interactiveshell import InteractiveShell\n"
              "shell = InteractiveShell.instance()\nstarted = time.perf_counter()\n"
              "shell.run_line_magic('load_ext', 'elasticcode')\nspent = time.perf_counter() - started\n"
              "heavy = [m for m in ('pandas', 'sqlalchemy', 'celery', 'click', 'redis', 'ipywidgets', 'elasticcode.cli')"
              " if m in sys.modules]\nprint(heavy, 'flow' in shell.magics_manager.magics['line'], f'{spent:.3f}')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True).stdout
    heavy, registered, spent = out.rsplit(" ", 2)
    print(f"\n%load_ext elasticcode: {spent} s")
    assert heavy == "[]" and registered == "True", out
