"""Shared fixtures: real services, one private database per test run.

PostgreSQL: the machine's server at 127.0.0.1:5432 when it answers (trust auth, as on the
test machines), in a database of our own made for this run and dropped after it; otherwise
an embedded stack started in a temporary home. Set ELASTICCODE_TEST_EMBEDDED=1 to force the
embedded stack.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from click.testing import CliRunner
from psycopg2 import sql
from runtime_helpers import AgentProcess, use_services

from elasticcode.db import schema
from elasticcode.db.engine import dispose_all, get_engine

SYSTEM_PG = os.environ.get("ELASTICCODE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _sqlalchemy(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


FORCE_EMBEDDED = bool(os.environ.get("ELASTICCODE_TEST_EMBEDDED"))


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory):
    """Started on first use only: for machines without PostgreSQL or Redis of their own."""
    from elasticcode import embedded

    home = tmp_path_factory.mktemp("stack")
    urls = embedded.up(home)
    try:
        yield urls
    finally:
        dispose_all()
        embedded.purge(home)  # as root the data lives outside the temp home: remove it too


@pytest.fixture(scope="session")
def pg_server(request) -> str:
    """A libpq URL of a superuser connection to a server we may create databases on."""
    if not FORCE_EMBEDDED and _answers("127.0.0.1", 5432):
        try:
            psycopg2.connect(SYSTEM_PG, connect_timeout=3).close()
            return SYSTEM_PG
        except psycopg2.OperationalError:
            pass
    urls = request.getfixturevalue("embedded_stack")
    return urls.admin_db.replace("postgresql+psycopg2://", "postgresql://", 1)


REDIS_CLAIM = "ec:test:claimed-by"  # a db index's owner, so concurrent test runs never share (or flush) one


def _claim(url: str, owner: str) -> bool:
    from elasticcode.runtime.connections import redis_client

    return bool(redis_client(url).set(REDIS_CLAIM, owner, nx=True, ex=4 * 3600))


def flush_redis(url: str) -> None:
    """Empty this run's Redis db index, keeping the run's claim on it."""
    from elasticcode.runtime.connections import redis_client

    client = redis_client(url)
    claim = client.get(REDIS_CLAIM)
    client.flushdb()
    if claim:
        client.set(REDIS_CLAIM, claim, ex=4 * 3600)


@pytest.fixture(scope="session")
def redis_base(request) -> Iterator[str]:
    """Redis for broker and backend: the machine's (on a db index no other run holds) or the embedded one."""
    if FORCE_EMBEDDED or not _answers("127.0.0.1", 6379):
        yield request.getfixturevalue("embedded_stack").broker
        return
    owner = f"{os.getpid()}-{uuid.uuid4()}"
    indexes = [8 + (uuid.uuid4().int + i) % 8 for i in range(8)]
    url = next((u for i in indexes if _claim(u := f"redis://127.0.0.1:6379/{i}", owner)), None)
    if url is None:
        pytest.exit("Redis db indexes 8-15 are all held by other test runs (key ec:test:claimed-by): wait for them", 2)
    yield url
    from elasticcode.runtime.connections import redis_client

    redis_client(url).delete(REDIS_CLAIM)


@pytest.fixture(scope="session")
def admin_url(pg_server: str) -> Iterator[str]:
    """SQLAlchemy URL of a fresh database, schema initialised, dropped at the end of the run."""
    name = f"ec_test_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(pg_server)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, query = pg_server.partition("?")
    url = _sqlalchemy(base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else ""))
    schema.init(url)
    try:
        yield url
    finally:
        dispose_all()
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.close()


def group_login(admin_url: str, pg_server: str, folder: Path, group: str, prefix: str) -> Iterator[str]:
    """A login role of this run in `group`, no superuser, no BYPASSRLS, its password in a 0600
    passfile (as `flow up` makes its own logins); its URL, and the role dropped afterwards."""
    from sqlalchemy.engine import make_url

    from elasticcode.security import new_password, pgpass_line, scram_verifier, write_private_file

    role, password = f"{prefix}_{uuid.uuid4().hex[:8]}", new_password()
    passfile = folder / "pgpass"
    url = make_url(admin_url)
    write_private_file(passfile, pgpass_line(url.host or "localhost", role, password))
    conn = psycopg2.connect(pg_server)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(scram_verifier(password))))
        cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role)))
    try:
        yield url.set(username=role, password=None, query={**url.query, "passfile": str(passfile)}).render_as_string(
            hide_password=False)
    finally:
        dispose_all()
        with conn.cursor() as cur:
            # A session ends a moment after its socket closes, and until then its temporary tables
            # (a recorder's staging tables) are the role's: DROP ROLE would refuse.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,))
                if not cur.fetchone()[0]:
                    break
                time.sleep(0.05)
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.close()


@pytest.fixture(scope="session")
def service_url(admin_url: str, pg_server: str, tmp_path_factory) -> Iterator[str]:
    """URL of a login role of this run that is what an agent connects as: a member of
    elasticcode_service, no superuser, no BYPASSRLS (as `flow up` makes `elasticcode_agent`)."""
    yield from group_login(admin_url, pg_server, tmp_path_factory.mktemp("service"), "elasticcode_service", "ec_agent")


@pytest.fixture
def db_url(admin_url: str) -> str:
    """The run's database, emptied of network objects before each test."""
    from sqlalchemy import text

    from elasticcode.db.engine import get_engine
    from elasticcode.db.model import Base

    keep = {"privilege"}
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables if t.name not in keep)
    with get_engine(admin_url).begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    return admin_url


@pytest.fixture
def services(db_url, service_url, redis_base, home, monkeypatch):
    """The run's database plus an emptied Redis as broker and backend, in the environment."""
    from elasticcode.client import settings

    flush_redis(redis_base)
    yield use_services(monkeypatch, db_url, redis_base, service_url)
    settings.reset_settings()
    flush_redis(redis_base)


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    """A private ELASTICCODE_HOME with no configuration from the environment."""
    path = tmp_path / "ech"
    path.mkdir()
    monkeypatch.setenv("ELASTICCODE_HOME", str(path))
    for var in ("ELASTICCODE_DB", "ELASTICCODE_ADMIN_DB", "ELASTICCODE_SERVICE_DB", "ELASTICCODE_BROKER",
                "ELASTICCODE_BACKEND", "ELASTICCODE_INI", "ELASTICCODE_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    return path


class FlowResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"FlowResult(code={self.code}, out={self.out[-500:]!r}, err={self.err[-500:]!r})"


@pytest.fixture
def bare_flow(home: Path):
    """`flow` with whatever configuration the test puts in the environment."""
    return run_flow


def run_flow(*args: str, input: str | None = None) -> FlowResult:
    """Run `flow ARGS...` in-process through the console entry point (exit code, stdout, stderr)."""
    from elasticcode.cli import main

    runner = CliRunner()
    with runner.isolation(input=input) as (out, err, *_):
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return FlowResult(code, out.getvalue().decode(), err.getvalue().decode())


@pytest.fixture
def flow(home: Path, db_url: str, monkeypatch):
    """`flow` against the run's test database."""
    monkeypatch.setenv("ELASTICCODE_DB", db_url)
    return run_flow


@pytest.fixture
def sample_repo(tmp_path: Path) -> Path:
    """A real git repository holding the manual's sample module (pyfi.processors.sample)."""
    import git

    repo_dir = tmp_path / "pyfi-processors"
    pkg = repo_dir / "pyfi" / "processors"
    pkg.mkdir(parents=True)
    (repo_dir / "pyfi" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "sample.py").write_text(
        "def do_something(message):\n    return 'TEXT:' + str(message)\n\n\n"
        "def do_this(message):\n    return 'Do this: ' + str(message)\n"
    )
    repo = git.Repo.init(repo_dir, initial_branch="main")
    repo.index.add(["pyfi/__init__.py", "pyfi/processors/__init__.py", "pyfi/processors/sample.py"])
    repo.index.commit("sample processors", author=git.Actor("t", "t@example.com"), committer=git.Actor("t", "t@example.com"))
    return repo_dir


@pytest.fixture
def make_role(db_url):
    """Names of roles made by a test; dropped afterwards (roles are cluster-wide)."""
    made: list[str] = []

    def name() -> str:
        role = f"u{uuid.uuid4().hex[:8]}"
        made.append(role)
        return role

    yield name
    dispose_all()
    with get_engine(db_url).begin() as conn:
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur:
            for role in made:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if cur.fetchone():
                    cur.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    remove_worker_users(made)


def remove_worker_users(roles: list[str]) -> None:
    """The system users an agent running as root made for these roles' workers (`ecw-<hash>`)."""
    if os.geteuid() != 0 or not shutil.which("userdel"):
        return
    from elasticcode.embedded.users import owner_user_name

    for role in roles:
        name = owner_user_name(role)
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        subprocess.run(["pkill", "-KILL", "-u", name], check=False, capture_output=True)
        subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)  # its own group, if userdel left it


@pytest.fixture
def agent(services, home):
    """`flow agent start` (2 CPUs) on the run's services, stopped after the test."""
    process = AgentProcess(home / "agent", services).start()
    yield process
    process.stop()
    assert process.process.returncode is not None
