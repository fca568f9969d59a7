"""`flow add | ls | update | delete` against a real PostgreSQL: the manual's quickstart and integrity."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from elasticcode.db import model as m
from elasticcode.db.engine import session_scope
from elasticcode.runtime.naming import node_name


def counts(url: str) -> dict[str, int]:
    with session_scope(url) as s:
        return {t.__tablename__: s.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (m.Queue, m.Processor, m.Socket, m.Task, m.Plug)}


def quickstart(flow, repo) -> None:
    for args in (
        ("add", "queue", "-n", "pyfi.queue1", "-t", "direct"),
        ("add", "processor", "-n", "proc1", "-g", str(repo), "-m", "pyfi.processors.sample", "-h", "localhost", "-c", "5"),
        ("add", "socket", "-n", "pyfi.processors.sample.do_something", "-q", "pyfi.queue1", "-pn", "proc1", "-t", "do_something"),
        ("add", "socket", "-n", "pyfi.processors.sample.do_this", "-q", "pyfi.queue1", "-pn", "proc1", "-t", "do_this"),
    ):
        result = flow(*args)
        assert result.code == 0, result


def test_quickstart_objects_are_listed(flow, sample_repo):
    quickstart(flow, sample_repo)
    procs = json.loads(flow("--json", "ls", "processors").out)
    assert [(p["name"], p["module"], p["concurrency"], p["hostname"]) for p in procs] == [
        ("proc1", "pyfi.processors.sample", 5, node_name())  # `-h localhost`: this machine's node
    ]
    sockets = json.loads(flow("--json", "ls", "sockets").out)
    assert {(s["name"], s["processor"], s["function"], s["queue"]) for s in sockets} == {
        ("pyfi.processors.sample.do_something", "proc1", "do_something", "pyfi.queue1"),
        ("pyfi.processors.sample.do_this", "proc1", "do_this", "pyfi.queue1"),
    }
    queues = json.loads(flow("ls", "queues", "--json").out)
    assert [(q["name"], q["qtype"], q["durable"]) for q in queues] == [("pyfi.queue1", "direct", True)]
    table = flow("ls", "sockets")
    assert table.code == 0 and "do_something" in table.out and "proc1" in table.out


def test_unknown_processor_names_it_and_writes_nothing(flow, db_url, sample_repo):
    quickstart(flow, sample_repo)
    before = counts(db_url)
    result = flow("add", "socket", "-n", "s", "-q", "q", "-pn", "nosuch", "-t", "f")
    assert result.code != 0
    assert "nosuch" in result.err
    assert len(result.err.strip().splitlines()) == 1, "one line, no traceback"
    assert counts(db_url) == before  # not even the queue 'q' was created


def test_duplicate_names_are_refused(flow, sample_repo):
    quickstart(flow, sample_repo)
    result = flow("add", "queue", "-n", "pyfi.queue1", "-t", "fanout")  # the same definition would be "unchanged"
    assert result.code == 1 and "already exists" in result.err and "pyfi.queue1" in result.err


def test_plugs_and_cycles(flow, db_url, sample_repo):
    quickstart(flow, sample_repo)
    ok = flow("add", "plug", "-n", "p1", "-s", "pyfi.processors.sample.do_something", "-t", "pyfi.processors.sample.do_this",
              "-a", "message")
    assert ok.code == 0, ok
    before = counts(db_url)
    cycle = flow("add", "plug", "-n", "p2", "-s", "pyfi.processors.sample.do_this", "-t", "pyfi.processors.sample.do_something")
    assert cycle.code == 1 and "cycle" in cycle.err
    self_loop = flow("add", "plug", "-n", "p3", "-s", "pyfi.processors.sample.do_this", "-t", "pyfi.processors.sample.do_this")
    assert self_loop.code == 1 and "itself" in self_loop.err
    missing = flow("add", "plug", "-n", "p4", "-s", "pyfi.processors.sample.do_this", "-t", "ghost")
    assert missing.code == 1 and "ghost" in missing.err
    assert counts(db_url) == before
    plugs = json.loads(flow("--json", "ls", "plugs").out)
    assert [(p["name"], p["source"], p["target"], p["argument"], p["type"]) for p in plugs] == [
        ("p1", "pyfi.processors.sample.do_something", "pyfi.processors.sample.do_this", "message", "RESULT")
    ]


def test_update_and_delete(flow, db_url, sample_repo):
    quickstart(flow, sample_repo)
    assert flow("update", "processor", "-n", "proc1", "-c", "2", "--commit", "abc1234").code == 0
    proc = json.loads(flow("--json", "ls", "processors", "-n", "proc1").out)[0]
    assert (proc["concurrency"], proc["commit"]) == (2, "abc1234")
    bad = flow("update", "processor", "-n", "proc1", "-c", "0")
    assert bad.code == 1 and "at least 1" in bad.err
    in_use = flow("delete", "queue", "-n", "pyfi.queue1")
    assert in_use.code == 1 and "used by socket" in in_use.err
    assert flow("delete", "processor", "-n", "proc1").code == 0
    assert counts(db_url)["socket"] == 0 and counts(db_url)["task"] == 0
    assert flow("delete", "queue", "-n", "pyfi.queue1").code == 0
    gone = flow("delete", "queue", "-n", "pyfi.queue1")
    assert gone.code == 1 and "does not exist" in gone.err


@pytest.mark.parametrize("url", [
    "https://user:key@github.com/radiantone/pyfi-processors",
    "ext::sh -c touch% /tmp/pwned",
    "relative/path",
    "-uhoh",
])
def test_unsafe_git_urls_are_refused(flow, url):
    result = flow("add", "processor", "-n", "p", "-g", url, "-m", "a.b")
    assert result.code == 1 and result.err.startswith("Error: git repository"), result


def test_bad_module_and_function_names(flow, sample_repo):
    assert "dotted" in flow("add", "processor", "-n", "p", "-g", str(sample_repo), "-m", "a..b").err
    flow("add", "processor", "-n", "p", "-g", str(sample_repo), "-m", "a.b")
    assert "identifier" in flow("add", "socket", "-n", "s", "-q", "q", "-pn", "p", "-t", "rm -rf").err


def test_usage_errors_exit_2(flow):
    result = flow("add", "processor", "--bogus")
    assert result.code == 2 and "--bogus" in result.err


def test_help_lists_the_manuals_commands(flow):
    top = flow("--help").out
    for command in ("add", "agent", "compose", "db", "delete", "listen", "login", "logout", "ls", "node", "proc",
                    "scheduler", "task", "update", "user", "whoami", "worker", "up", "down", "status"):
        assert f"  {command} " in top, command
    assert all(c in flow("db", "--help").out for c in ("drop", "init", "json", "migrate", "rebuild"))
    assert all(c in flow("proc", "--help").out for c in ("pause", "remove", "restart", "resume", "start", "stop"))
    assert all(c in flow("ls", "calls", "--help").out for c in ("--page", "--rows", "--unfinished", "--ascend"))
    assert all(c in flow("ls", "call", "--help").out for c in ("--id", "--result", "--tree", "--graph"))
    for kind in ("queue", "processor", "socket", "plug", "node", "agent", "scheduler", "user", "role", "privilege"):
        assert f"  {kind} " in flow("add", "--help").out, kind


def test_ls_calls_pages_when_empty(flow):
    result = flow("ls", "calls", "-p", "1", "-r", "5")  # not a terminal: stdout holds records only
    assert result.code == 0 and result.out == "" and "Page 1 of 1 of 0 total records" in result.err
    assert flow("ls", "calls", "--csv").out.splitlines() == ["id,name,state,owner,started,finished,duration"]


def test_no_database_configured_is_one_clear_line(home):
    from click.testing import CliRunner

    from elasticcode.cli import main

    runner = CliRunner()
    with runner.isolation() as (out, err, *_):
        with pytest.raises(SystemExit) as exit_info:
            main(["ls", "queues"])
    assert exit_info.value.code == 1
    assert "no database configured" in err.getvalue().decode()


def test_unreachable_database_is_one_clear_line(home, monkeypatch):
    from click.testing import CliRunner

    from elasticcode.cli import main

    monkeypatch.setenv("ELASTICCODE_DB", "postgresql+psycopg2://nobody:secret@127.0.0.1:1/none")
    runner = CliRunner()
    with runner.isolation() as (out, err, *_):
        with pytest.raises(SystemExit) as exit_info:
            main(["ls", "queues"])
    message = err.getvalue().decode()
    assert exit_info.value.code == 1
    assert "cannot reach the model database" in message and "secret" not in message and "***" in message


def test_call_lookups_name_bad_ids(flow):
    assert "is not a call id" in flow("ls", "call", "--id", "nope").err
    assert "is not a call id" in flow("ls", "calls", "-t", "nope").err
    missing = flow("ls", "call", "--id", "00000000-0000-0000-0000-000000000000")
    assert missing.code == 1 and "does not exist" in missing.err
