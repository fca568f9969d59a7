"""Users are PostgreSQL roles; rights are checked; rows are private by row-level security."""

from __future__ import annotations

import json
import stat

import psycopg2
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from elasticcode import config
from elasticcode.db.engine import get_engine
from elasticcode.security import redact_url, scram_verifier

PASSWORD = "s3cret-pass"


def login(flow, db_url: str, role: str, monkeypatch, password: str = PASSWORD) -> str:
    """`flow login -n ROLE` (password prompted) from the admin's URL; the environment then acts as ROLE.

    Returns ROLE's URL: it names the home's password file, where login keeps the password, so
    the role connects on SCRAM servers (the embedded stack) as well as on trust-auth ones."""
    monkeypatch.setenv("ELASTICCODE_DB", db_url)
    result = flow("login", "-n", role, input=password + "\n")
    assert result.code == 0, result
    monkeypatch.delenv("ELASTICCODE_DB")
    url = config.load().db
    assert url and make_url(url).username == role and "passfile=" in url
    monkeypatch.setenv("ELASTICCODE_DB", url)
    return url


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def test_scram_verifier_matches_postgres_format():
    verifier = scram_verifier("pencil", salt=b"0123456789abcdef")
    kind, rest = verifier.split("$", 1)
    assert kind == "SCRAM-SHA-256" and rest.startswith("4096:")
    assert verifier == scram_verifier("pencil", salt=b"0123456789abcdef")
    assert "pencil" not in verifier


def test_add_user_stores_only_a_scram_verifier(flow, db_url, make_role):
    joe = make_role()
    result = flow("add", "user", "-n", joe, "-e", f"{joe}@xyz", input="correct horse\ncorrect horse\n")
    assert result.code == 0, result
    assert "correct horse" not in result.out
    with get_engine(db_url).connect() as conn:
        stored = conn.execute(text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": joe}).scalar()
        row = conn.execute(text("SELECT * FROM users WHERE name = :r"), {"r": joe}).mappings().one()
    assert stored.startswith("SCRAM-SHA-256$")
    assert "password" not in row and "clear" not in row
    info = json.loads(flow("--json", "ls", "user", "-n", joe).out)
    assert info[0]["email"] == f"{joe}@xyz" and info[0]["privileges"] == []


def test_rights_are_checked_and_granted(flow, db_url, make_role, monkeypatch):
    joe = make_role()
    assert flow("add", "user", "-n", joe, input=f"{PASSWORD}\n{PASSWORD}\n").code == 0
    joe_url = login(flow, db_url, joe, monkeypatch)
    denied = flow("ls", "queues")
    assert denied.code == 1 and "LS_QUEUES" in denied.err and f"flow add privilege -u {joe}" in denied.err
    assert "ADD_QUEUE" in flow("add", "queue", "-n", "jq").err

    monkeypatch.setenv("ELASTICCODE_DB", db_url)
    assert flow("add", "privilege", "-u", joe, "-n", "LS_QUEUES").code == 0
    assert flow("add", "role", "-n", f"dev{joe}").code == 0
    assert flow("add", "privilege", "-r", f"dev{joe}", "-n", "ADD_QUEUE").code == 0
    assert flow("update", "user", "-n", joe, "--add-role", f"dev{joe}").code == 0

    monkeypatch.setenv("ELASTICCODE_DB", joe_url)
    assert flow("add", "queue", "-n", "jq").code == 0
    assert [q["owner"] for q in json.loads(flow("--json", "ls", "queues").out)] == [joe]
    who = json.loads(flow("--json", "whoami").out)
    assert who["user"] == joe and set(who["rights"]) == {"LS_QUEUES", "ADD_QUEUE"}


def test_login_keeps_the_password_in_the_private_password_file(flow, db_url, make_role, monkeypatch, home):
    joe = make_role()
    assert flow("add", "user", "-n", joe, input=f"{PASSWORD}\n{PASSWORD}\n").code == 0
    url = login(flow, db_url, joe, monkeypatch)
    pgpass = home / "pgpass"
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600 and f":{joe}:{PASSWORD}" in pgpass.read_text()
    assert PASSWORD not in (home / "elasticcode.ini").read_text() and PASSWORD not in url
    conn = psycopg2.connect(libpq(url))  # joe connects with what login stored, on any server
    with conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == joe
    conn.close()
    assert flow("logout").code == 0
    assert f":{joe}:" not in pgpass.read_text()


def test_row_level_security_keeps_rows_private(flow, db_url, make_role, monkeypatch):
    joe, ann = make_role(), make_role()
    for user in (joe, ann):
        assert flow("add", "user", "-n", user, input=f"{PASSWORD}\n{PASSWORD}\n").code == 0
        assert flow("add", "privilege", "-u", user, "-n", "ALL").code == 0
    login(flow, db_url, joe, monkeypatch)
    assert flow("add", "queue", "-n", "shared-name").code == 0
    ann_url = login(flow, db_url, ann, monkeypatch)
    assert json.loads(flow("--json", "ls", "queues").out) == []
    # Names are unique per owner, so ann may use the same name.
    assert flow("add", "queue", "-n", "shared-name").code == 0
    # Even raw SQL cannot read or forge another owner's rows.
    conn = psycopg2.connect(libpq(ann_url))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT owner FROM queue")
        assert [r[0] for r in cur.fetchall()] == [ann]
        with pytest.raises(psycopg2.Error, match="row-level security"):
            cur.execute("INSERT INTO queue (name, owner) VALUES ('forged', %s)", (joe,))
    conn.close()
    monkeypatch.setenv("ELASTICCODE_DB", db_url)
    assert sorted(q["owner"] for q in json.loads(flow("--json", "ls", "queues").out)) == sorted([joe, ann])


def test_non_user_role_is_told_what_to_do(flow, db_url, make_role, monkeypatch):
    stranger = make_role()
    with get_engine(db_url).begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE \"{stranger}\" LOGIN PASSWORD '{scram_verifier(PASSWORD)}'")
        conn.exec_driver_sql(f'GRANT elasticcode_user TO "{stranger}"')
    login(flow, db_url, stranger, monkeypatch)
    result = flow("ls", "processors")
    assert result.code == 1 and "is not an ElasticCode user" in result.err


def test_bad_user_names_and_short_passwords(flow):
    assert "not valid" in flow("add", "user", "-n", "Robert'); DROP TABLE users;--", input="longenough\nlongenough\n").err
    assert "too short" in flow("add", "user", "-n", "shorty", input="abc\nabc\n").err


def test_redaction():
    assert redact_url("postgresql://joe:pw@h:5/db") == "postgresql://joe:***@h:5/db"
    assert redact_url("redis+socket:///x/redis.sock") == "redis+socket:///x/redis.sock"
