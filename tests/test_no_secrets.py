"""No password anywhere: on a private embedded stack, a user added and logged in through `flow`
with `--password-stdin`, and a queue added as that user, the user's known password and every
generated password of the home's `pgpass` appear

(a) in no file under the home but `pgpass` itself (binary-safe; with the PostgreSQL data and
    log, which as root live in /var/lib/elasticcode/<hash>, and Redis's log and data),
(b) in no process's command line (nor any environment we can read) while the services, the
    agent and a `flow login --password-stdin` waiting on its standard input run,
(c) in no Redis key or value, in any database,
(d) in no table of the model database,

nor in anything `flow` printed; the ini file references the password file (`passfile=`) and holds
no password; `pgpass` is mode 0600.

`flow` runs as a subprocess (a user's shell would run it so), with ELASTICCODE_HOME a temporary
folder and no other configuration; `flow down` and `embedded.purge(home)` clean up at the end.
"""

from __future__ import annotations

import configparser
import json
import os
import platform
import secrets
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from elasticcode import embedded
from elasticcode.embedded.postgres import read_pgpass
from elasticcode.embedded.state import load_state

FLOW_BIN = Path(sys.executable).with_name("flow")
FLOW = [str(FLOW_BIN)] if FLOW_BIN.exists() else [sys.executable, "-c", "from elasticcode.cli import main; main()"]
READ_SYSCALL = {"x86_64": 0, "aarch64": 63}.get(platform.machine())


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELASTICCODE_", "PG"))}
    return {**env, "ELASTICCODE_HOME": str(home)}


class Stack:
    """What the scenario leaves behind for the checks."""

    def __init__(self, home: Path):
        self.home = home
        self.known = ""  # the user's password, typed by "the user"
        self.user = ""
        self.outputs: list[str] = []  # everything `flow` printed
        self.cmdlines: dict[int, bytes] = {}  # /proc/*/cmdline while login waited on stdin
        self.environs: dict[int, bytes] = {}
        self.login_pid = 0

    def flow(self, *args: str, input: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
        done = subprocess.run([*FLOW, *args], input=input, capture_output=True, text=True, env=_env(self.home), timeout=timeout)
        self.outputs += [done.stdout, done.stderr]
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
        return done

    def passwords(self) -> dict[str, str]:
        """Every password this test knows of: role -> password (the generated ones from pgpass)."""
        found = read_pgpass(self.home)
        assert {"elasticcode_admin", "elasticcode_agent", self.user} <= set(found), sorted(found)
        assert found[self.user] == self.known
        return found

    def needles(self) -> dict[bytes, str]:
        """Byte strings to look for (each password as typed and URL-quoted) -> the role it belongs to."""
        out: dict[bytes, str] = {}
        for role, password in self.passwords().items():
            assert len(password) >= 12, role  # long enough that a chance match is impossible
            for form in {password, quote(password, safe="")}:
                out[form.encode()] = role
        return out


def _processes() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # gone, or not ours to read
        return None


def _waiting_on_stdin(pid: int, seconds: float = 60) -> None:
    """Until `pid` blocks in read(0, ...): the password prompt's moment (a few seconds if we cannot tell)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        syscall = _read(f"/proc/{pid}/syscall")
        if syscall is None or READ_SYSCALL is None:
            time.sleep(5)
            return
        if syscall.split()[:2] == [str(READ_SYSCALL).encode(), b"0x0"]:
            return
        time.sleep(0.05)
    raise AssertionError(f"flow login (pid {pid}) never waited on its standard input")


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    home = tmp_path_factory.mktemp("nosecrets") / "home"
    s = Stack(home)
    try:
        s.flow("up", timeout=600)
        s.user = f"joe_{uuid.uuid4().hex[:8]}"
        s.known = f"Kn0wn-{secrets.token_urlsafe(18)}"
        s.flow("add", "user", "-n", s.user, "-e", f"{s.user}@example.com", "--password-stdin", input=s.known + "\n")
        s.flow("add", "privilege", "-u", s.user, "-n", "ADD_QUEUE")  # as the stack's own user (ALL)

        # (b) while PostgreSQL, Redis and the agent run, and `flow login` waits for the password
        login = subprocess.Popen([*FLOW, "login", "-u", s.user, "--password-stdin"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(home))
        try:
            s.login_pid = login.pid
            _waiting_on_stdin(login.pid)
            for pid in _processes():
                s.cmdlines[pid] = _read(f"/proc/{pid}/cmdline") or b""
                s.environs[pid] = _read(f"/proc/{pid}/environ") or b""
            out, err = login.communicate(s.known + "\n", timeout=120)
        finally:
            if login.poll() is None:
                login.kill()
        s.outputs += [out, err]
        assert login.returncode == 0 and f"logged in as {s.user}" in out, (out, err)

        s.flow("add", "queue", "-n", "secretsq", "-t", "direct")  # as the user just logged in
        s.flow("whoami")
        s.flow("status")
        yield s
    finally:
        try:
            subprocess.run([*FLOW, "down"], env=_env(home), capture_output=True, timeout=300)
        finally:
            embedded.purge(home)


def _hits(data: bytes, needles: dict[bytes, str]) -> set[str]:
    return {role for needle, role in needles.items() if needle in data}


def _stack_folders(home: Path) -> list[Path]:
    """The home, and where the services keep data and logs outside it (as root: /var/lib/elasticcode/...)."""
    state = load_state(home) or {}
    folders = [home.resolve(), Path(state["postgres"]["base"]).resolve()]
    folders += [Path(p).resolve() for p in (state["postgres"]["data"], state["postgres"]["log"])]
    from elasticcode.embedded import redis as embedded_redis

    lay = embedded_redis.layout(home)
    folders += [lay["dir"].resolve(), lay["log"].resolve()]
    return folders


def test_a_no_file_but_pgpass_and_no_log_holds_a_password(stack):
    needles = stack.needles()
    pgpass = (stack.home / "pgpass").resolve()
    assert _hits(pgpass.read_bytes(), needles) == set(needles.values())  # the search itself works

    statuses = {s.name: s for s in embedded.status(stack.home)}
    assert statuses["postgres"].running and statuses["redis"].running, statuses
    logs = [Path(load_state(stack.home)["postgres"]["log"]), Path(statuses["redis"].detail.removeprefix("log ")),
            stack.home / "agent.log"]
    for log in logs:
        assert log.is_file() and log.stat().st_size > 0, log

    seen: set[Path] = set()
    leaks: dict[str, set[str]] = {}
    for top in _stack_folders(stack.home):
        paths = [top] if top.is_file() else [Path(d, f) for d, _, files in os.walk(top) for f in files]
        for path in paths:
            path = path.resolve()
            if path in seen or path == pgpass or not path.is_file():  # sockets and FIFOs are not files
                continue
            seen.add(path)
            with open(path, "rb") as f:
                found = _hits(f.read(), needles)
            if found:
                leaks[str(path)] = found
    assert not leaks, leaks
    assert all(log.resolve() in seen for log in logs)
    assert len(seen) > 100  # the PostgreSQL data directory was read too


def test_b_no_command_line_holds_a_password(stack):
    needles = stack.needles()
    assert stack.login_pid in stack.cmdlines and b"--password-stdin" in stack.cmdlines[stack.login_pid]
    running = {name: any(name.encode() in c for c in stack.cmdlines.values()) for name in ("postgres", "redis-server", "kernel_agent")}
    assert all(running.values()), running  # the services and the agent were there to be looked at
    leaks = {pid: _hits(cmd, needles) for pid, cmd in stack.cmdlines.items() if _hits(cmd, needles)}
    assert not leaks, {pid: (stack.cmdlines[pid][:200], roles) for pid, roles in leaks.items()}
    leaks = {pid: _hits(env, needles) for pid, env in stack.environs.items() if _hits(env, needles)}
    assert not leaks, leaks  # nor PGPASSWORD or ELASTICCODE_PASSWORD in any environment


def test_c_no_redis_key_or_value_holds_a_password(stack):
    import redis

    from elasticcode.runtime.connections import redis_client

    needles = stack.needles()
    first = redis_client(embedded.urls(stack.home).broker)
    databases = int(first.config_get("databases")["databases"])
    pool = first.connection_pool
    keys = 0
    for db in range(databases):
        client = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class,
                                                                  **{**pool.connection_kwargs, "db": db}))
        for key in client.scan_iter(count=500):
            keys += 1
            kind = client.type(key).decode()
            values: list[bytes] = [key, client.dump(key) or b""]
            if kind == "string":
                values.append(client.get(key) or b"")
            elif kind == "hash":
                values += [b for pair in client.hgetall(key).items() for b in pair]
            elif kind == "list":
                values += client.lrange(key, 0, -1)
            elif kind == "set":
                values += list(client.smembers(key))
            elif kind == "zset":
                values += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                values += [json.dumps([(i.decode(), {k.decode("latin-1"): v.decode("latin-1") for k, v in f.items()})
                                       for i, f in client.xrange(key)]).encode("latin-1")]
            found = _hits(b"\0".join(values), needles)
            assert not found, (db, key, kind, found)
        client.close()
    assert keys > 0  # the agent publishes its routes and heartbeat there: something was looked at


def test_d_no_table_holds_a_password_and_the_ini_only_names_the_passfile(stack):
    from elasticcode.db import schema

    needles = stack.needles()
    tables = schema.dump(embedded.urls(stack.home).admin_db)
    assert any(row.get("name") == "secretsq" for row in tables["queue"])  # joe's queue is there
    assert any(row.get("name") == stack.user for row in tables["users"])
    found = {name: _hits(json.dumps(rows, default=str).encode(), needles) for name, rows in tables.items()}
    assert not any(found.values()), found

    ini_path = stack.home / "elasticcode.ini"
    text = ini_path.read_bytes()
    assert not _hits(text, needles)
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(text.decode())
    urls = {f"{section}.{key}": value for section in ini.sections() for key, value in ini[section].items() if "://" in value}
    assert {"database.uri", "database.admin_uri", "database.service_uri"} <= set(urls), urls
    assert not any("password" in key for section in ini.sections() for key in ini[section]), ini.sections()
    for name, url in urls.items():
        parts = urlsplit(url)
        assert parts.password is None, name
        if parts.scheme.startswith("postgres"):
            assert dict(parse_qsl(parts.query)).get("passfile") == str((stack.home / "pgpass").resolve()), (name, url)
    assert f"{stack.user}@" in urls["database.uri"]  # the login took effect

    mode = stat.S_IMODE(os.stat(stack.home / "pgpass").st_mode)
    assert mode == 0o600, oct(mode)


def test_e_nothing_flow_printed_holds_a_password(stack):
    needles = stack.needles()
    printed = "\n".join(stack.outputs).encode()
    assert b"logged in as" in printed and b"stack is up" in printed
    assert not _hits(printed, needles)
