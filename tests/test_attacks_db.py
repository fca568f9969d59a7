"""Attacks on the model database from security review issue 10: each must now FAIL.

The rights are enforced by the database itself (migration 0003), so raw SQL over psycopg2 meets
the same refusals as the CLI; agents connect as a non-superuser service role; granting needs the
right to grant on whatever session runs the CLI; no password is ever on a command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from elasticcode import config
from elasticcode.config import Settings
from elasticcode.db.engine import get_engine
from elasticcode.errors import ElasticCodeError
from elasticcode.security import scram_verifier

PASSWORD = "s3cret-pass"


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


@pytest.fixture
def user(flow, db_url, make_role, monkeypatch):
    """A new ElasticCode user with the given rights, logged in (`flow login`); returns (name, URL).

    The environment is left pointing at the admin's URL."""

    def make(*rights: str) -> tuple[str, str]:
        name = make_role()
        monkeypatch.setenv("ELASTICCODE_DB", db_url)
        assert flow("add", "user", "-n", name, input=f"{PASSWORD}\n{PASSWORD}\n").code == 0
        for right in rights:
            assert flow("add", "privilege", "-u", name, "-n", right).code == 0
        assert flow("login", "-n", name, input=f"{PASSWORD}\n").code == 0
        monkeypatch.delenv("ELASTICCODE_DB")
        url = config.load().db
        monkeypatch.setenv("ELASTICCODE_DB", db_url)
        assert url and make_url(url).username == name
        return name, url

    return make


def admin_sql(db_url: str, statement: str, params: tuple = ()) -> list[tuple]:
    with get_engine(db_url).begin() as conn:
        cur = conn.connection.dbapi_connection.cursor()
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else []


def refused(url: str, statement: str, params: tuple = ()) -> str:
    """Run `statement` as the URL's role; it must be refused. Returns the error's first line."""
    conn = psycopg2.connect(libpq(url))
    try:
        with conn.cursor() as cur:
            with pytest.raises(psycopg2.Error) as caught:
                cur.execute(statement, params)
        return str(caught.value).splitlines()[0]
    finally:
        conn.rollback()
        conn.close()


def run(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(libpq(url))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else [(cur.rowcount,)]
    finally:
        conn.close()


def count(db_url: str, table: str) -> int:
    return admin_sql(db_url, f'SELECT count(*) FROM "{table}"')[0][0]


def own_network(db_url: str, owner: str) -> dict[str, str]:
    """A queue, a processor and a task owned by `owner`, made by the admin (so a socket may name them)."""
    (queue,), = admin_sql(db_url, "INSERT INTO queue (name, owner) VALUES ('q', %s) RETURNING id", (owner,))
    (proc,), = admin_sql(db_url, "INSERT INTO processor (name, owner, module, gitrepo, commit) "
                                 "VALUES ('p', %s, 'm', '/srv/git/x', 'aaaa') RETURNING id", (owner,))
    (task,), = admin_sql(db_url, "INSERT INTO task (name, owner, module, function, processor_id) "
                                 "VALUES ('p.f', %s, 'm', 'f', %s) RETURNING id", (owner, proc))
    return {"queue": queue, "processor": proc, "task": task}


def test_user_without_rights_cannot_insert_network_rows_by_sql(user, db_url):
    joe, url = user()
    ids = own_network(db_url, joe)
    assert "row-level security" in refused(url, "INSERT INTO queue (name) VALUES ('forged')")
    assert "row-level security" in refused(
        url, "INSERT INTO processor (name, module, gitrepo) VALUES ('forged', 'os', '/srv/git/evil')")
    assert "row-level security" in refused(
        url, "INSERT INTO socket (name, processor_id, queue_id, task_id) VALUES ('forged', %s, %s, %s)",
        (ids["processor"], ids["queue"], ids["task"]))
    # Nor change or delete what they own without UPDATE_/DELETE_ rights.
    assert run(url, "UPDATE processor SET gitrepo = '/srv/git/evil'") == [(0,)]
    assert run(url, "DELETE FROM queue") == [(0,)]
    assert (count(db_url, "queue"), count(db_url, "processor"), count(db_url, "socket")) == (1, 1, 0)
    assert admin_sql(db_url, "SELECT gitrepo FROM processor") == [("/srv/git/x",)]


def test_add_queue_does_not_let_a_user_insert_a_processor(user, db_url):
    joe, url = user("ADD_QUEUE")
    assert run(url, "INSERT INTO queue (name) VALUES ('mine') RETURNING owner") == [(joe,)]
    assert "row-level security" in refused(
        url, "INSERT INTO processor (name, module, gitrepo) VALUES ('forged', 'os', '/srv/git/evil')")
    assert (count(db_url, "queue"), count(db_url, "processor")) == (1, 0)


def test_users_cannot_write_calls_or_events(user, db_url):
    joe, url = user("ALL")  # not even with every right: provenance is the recorder's
    (call,), = admin_sql(db_url, "INSERT INTO call (name, owner, state) VALUES ('s', %s, 'queued') RETURNING id", (joe,))
    assert "permission denied" in refused(url, "INSERT INTO call (name, state) VALUES ('forged', 'finished')")
    assert "permission denied" in refused(url, "UPDATE call SET state = 'finished'")
    assert "permission denied" in refused(url, "DELETE FROM call")
    assert "permission denied" in refused(url, "INSERT INTO event (name, call_id) VALUES ('postrun', %s)", (call,))
    for table in ("node", "agent", "worker"):
        assert "permission denied" in refused(url, f"INSERT INTO {table} (name) VALUES ('forged')")
    assert admin_sql(db_url, "SELECT state FROM call") == [("queued",)] and count(db_url, "event") == 0


def test_calls_need_ls_calls_even_by_sql_and_history(user, db_url):
    joe, url = user("LS_QUEUES")
    for name in ("a", "b"):
        admin_sql(db_url, "INSERT INTO call (name, owner, state) VALUES (%s, %s, 'finished')", (name, joe))
    assert run(url, "SELECT * FROM call") == []
    assert run(url, "SELECT count(*) FROM event") == [(0,)]
    from elasticcode.client.history import history

    with pytest.raises(ElasticCodeError, match="LS_CALLS") as caught:
        history(settings=Settings(db=url))
    assert len(str(caught.value).splitlines()) == 1 and f"flow add privilege -u {joe} -n LS_CALLS" in str(caught.value)
    ann, ann_url = user("LS_CALLS")
    admin_sql(db_url, "INSERT INTO call (name, owner, state) VALUES ('c', %s, 'finished')", (ann,))
    assert len(run(ann_url, "SELECT * FROM call")) == 1  # own calls only
    assert list(history(settings=Settings(db=ann_url))["name"]) == ["c"]


def test_nodes_registered_by_agents_are_shown_to_every_user_with_ls_nodes(user, db_url, service_url, flow, monkeypatch):
    """Nodes are shared infrastructure: rows the agents' service role wrote are listed to any user
    holding LS_NODES (issue 9: `flow ls nodes` said "no nodes" to users), to no one else."""
    run(service_url, "INSERT INTO node (name, hostname, status) VALUES ('n1', 'n1', 'running'), ('n2', 'n2', 'down')")
    ann, ann_url = user("LS_NODES")
    joe, joe_url = user("LS_QUEUES")
    monkeypatch.setenv("ELASTICCODE_DB", ann_url)
    shown = flow("--json", "ls", "nodes")
    assert shown.code == 0, shown
    assert sorted((n["name"], n["status"]) for n in __import__("json").loads(shown.out)) == [("n1", "running"), ("n2", "down")]
    assert run(joe_url, "SELECT count(*) FROM node") == [(0,)]
    monkeypatch.setenv("ELASTICCODE_DB", joe_url)
    refused_ls = flow("ls", "nodes")
    assert refused_ls.code == 1 and "LS_NODES" in refused_ls.err and len(refused_ls.err.strip().splitlines()) == 1


def test_a_logged_in_user_cannot_grant_themselves_rights(flow, user, db_url, monkeypatch):
    joe, url = user("LS_QUEUES")
    # The home names the admin's URL too (as on the embedded stack): granting must not use it.
    monkeypatch.setenv("ELASTICCODE_ADMIN_DB", db_url)
    monkeypatch.setenv("ELASTICCODE_DB", url)
    result = flow("add", "privilege", "-u", joe, "-n", "RUN_TASK")
    assert result.code == 1 and "ADD_PRIVILEGE" in result.err
    for command in (("delete", "privilege", "-u", joe, "-n", "LS_QUEUES"),
                    ("user", "password", "-n", "postgres"),
                    ("update", "user", "-n", joe, "-e", "x@y")):
        denied = flow(*command, input=f"{PASSWORD}\n{PASSWORD}\n")
        assert denied.code == 1 and "lacks the right" in denied.err, (command, denied)
    # Nor by calling the SQL function, nor by writing the table.
    assert "ADD_PRIVILEGE" in refused(url, "SELECT elasticcode_grant(%s, false, 'RUN_TASK')", (joe,))
    assert "permission denied" in refused(
        url, "INSERT INTO user_privileges SELECT u.id, p.id FROM users u, privilege p "
             "WHERE u.name = %s AND p.\"right\" = 'RUN_TASK'", (joe,))
    held = "SELECT count(*) FROM user_privileges up JOIN users u ON u.id = up.user_id WHERE u.name = %s"
    assert admin_sql(db_url, held, (joe,)) == [(1,)]  # LS_QUEUES only


def test_granting_needs_the_right_granted(flow, user, db_url, monkeypatch):
    ann, url = user("ADD_PRIVILEGE", "LS_QUEUES")
    bob, _ = user()
    monkeypatch.setenv("ELASTICCODE_DB", url)
    assert flow("add", "privilege", "-u", bob, "-n", "LS_QUEUES").code == 0
    denied = flow("add", "privilege", "-u", ann, "-n", "ALL")
    assert denied.code == 1 and "only a holder of that right" in denied.err
    assert "only a holder" in refused(url, "SELECT elasticcode_grant(%s, false, 'RUN_TASK')", (bob,))
    rights = "SELECT p.\"right\" FROM user_privileges up JOIN users u ON u.id = up.user_id " \
             "JOIN privilege p ON p.id = up.privilege_id WHERE u.name = %s ORDER BY 1"
    assert admin_sql(db_url, rights, (bob,)) == [("LS_QUEUES",)]
    assert admin_sql(db_url, rights, (ann,)) == [("ADD_PRIVILEGE",), ("LS_QUEUES",)]


def test_add_user_cannot_take_over_an_existing_role(user, db_url, make_role):
    _, url = user("ADD_USER")
    verifier = scram_verifier("attacker-password")
    assert "not valid" in refused(url, "SELECT elasticcode_create_user('elasticcode_service', %s, NULL)", (verifier,))
    other_app = make_role()
    admin_sql(db_url, f'CREATE ROLE "{other_app}" LOGIN')
    assert "already exists" in refused(url, "SELECT elasticcode_create_user(%s, %s, NULL)", (other_app, verifier))
    password_of = "SELECT rolname, rolpassword FROM pg_authid WHERE rolsuper ORDER BY rolname"
    before = admin_sql(db_url, password_of)
    for superuser, _ in before:
        refused(url, "SELECT elasticcode_create_user(%s, %s, NULL)", (superuser, verifier))
    assert admin_sql(db_url, password_of) == before
    assert admin_sql(db_url, "SELECT count(*) FROM users WHERE name = %s", (other_app,)) == [(0,)]
    assert "SCRAM" in refused(url, "SELECT elasticcode_create_user('plainpw', 'password123', NULL)")
    assert "permission denied" in refused(url, f"CREATE ROLE evil LOGIN PASSWORD '{verifier}'")


def test_the_service_role_updates_statuses_never_code(service_url, db_url, user):
    joe, _ = user()
    ids = own_network(db_url, joe)
    assert "permission denied" in refused(service_url, "UPDATE processor SET commit = 'evil'")
    assert "permission denied" in refused(service_url, "UPDATE processor SET gitrepo = '/srv/git/evil'")
    assert "permission denied" in refused(service_url, "INSERT INTO queue (name) VALUES ('forged')")
    assert "permission denied" in refused(service_url, "DELETE FROM processor")
    assert run(service_url, "UPDATE processor SET status = 'running', status_message = NULL") == [(1,)]
    assert run(service_url, "SELECT owner FROM processor WHERE id = %s", (ids["processor"],)) == [(joe,)]
    assert admin_sql(db_url, "SELECT commit, status FROM processor") == [("aaaa", "running")]


def test_the_agent_connects_as_no_superuser_and_without_bypassrls(service_url, db_url, redis_base, home):
    from kernel_agent.context import AgentContext

    ctx = AgentContext.create(Settings(db=db_url, service_db=service_url, broker=redis_base), home)
    attributes = "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
    assert ctx.db_url == service_url and run(ctx.db_url, attributes) == [(False, False, False, False)]
    assert run(ctx.db_url, "SELECT pg_has_role(current_user, 'elasticcode_service', 'MEMBER')") == [(True,)]
    # Against an external database with ELASTICCODE_DB only, the agent uses that URL, not an admin one.
    only_db = AgentContext.create(Settings(db=service_url, admin_db=db_url, broker=redis_base), home)
    assert only_db.db_url == service_url


@pytest.mark.skipif(not os.environ.get("ELASTICCODE_TEST_EMBEDDED"), reason="the embedded stack's own agent role")
def test_the_embedded_agent_role_is_a_plain_service_member(embedded_stack):
    from elasticcode.embedded import stack

    home = Path(make_url(embedded_stack.admin_db).query["passfile"]).parent
    url = stack.ensure_service_role(home)
    assert make_url(url).username == "elasticcode_agent" and "passfile=" in url
    attributes = ("SELECT rolsuper, rolbypassrls, rolcreaterole, pg_has_role(current_user, 'elasticcode_service', 'MEMBER') "
                  "FROM pg_roles WHERE rolname = current_user")
    assert run(url, attributes) == [(False, False, False, True)]
    assert stack.ensure_service_role(home) == url  # idempotent


def test_no_password_on_the_command_line(flow, db_url, make_role, monkeypatch, home):
    name = make_role()
    result = flow("add", "user", "-n", name, "-p", "secret-value")
    assert result.code == 1 and "never given on the command line" in result.err and len(result.err.splitlines()) == 1
    for command in (("login", "-n", name, "-p", "secret-value"), ("user", "password", "-n", name, "--password", "x")):
        assert "never given on the command line" in flow(*command).err
    assert admin_sql(db_url, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (name,)) == [(0,)]

    # --password-stdin: while the CLI waits for the password, no process shows one.
    password = f"pw-{uuid.uuid4().hex}"
    flow_bin = str(Path(sys.executable).with_name("flow"))
    env = {**os.environ, "ELASTICCODE_DB": db_url, "ELASTICCODE_HOME": str(home)}
    process = subprocess.Popen([flow_bin, "add", "user", "-n", name, "--password-stdin"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _waits_on_stdin(process.pid) is False:
            time.sleep(0.05)
        assert process.poll() is None
        seen = _all_command_lines()
        assert any("--password-stdin" in line for line in seen) and not any(password in line for line in seen)
        out, err = process.communicate(password + "\n", timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert password not in out + err and not any(password in line for line in _all_command_lines())
    assert admin_sql(db_url, "SELECT count(*) FROM users WHERE name = %s", (name,)) == [(1,)]

    # ELASTICCODE_PASSWORD, for scripts: the password is in no command line either.
    other = make_role()
    monkeypatch.setenv("ELASTICCODE_PASSWORD", password)
    assert flow("add", "user", "-n", other).code == 0
    assert admin_sql(db_url, "SELECT count(*) FROM users WHERE name = %s", (other,)) == [(1,)]


def _all_command_lines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return lines


def _waits_on_stdin(pid: int) -> bool:
    """True once the process has slept (state S) for half a second: it is blocked reading stdin."""
    for _ in range(10):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
        except OSError:
            return True  # gone: let the caller see it
        if state != "S":
            return False
        time.sleep(0.05)
    return True
