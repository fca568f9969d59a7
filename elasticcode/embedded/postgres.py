"""The private PostgreSQL: located, initialised, started and stopped by our own launcher.

It listens on 127.0.0.1 only (no unix socket), uses SCRAM for every connection, and keeps the
generated passwords in a libpq password file (`home/pgpass`, 0600) that URLs point to. As root,
postgres refuses to run, so it runs as the system user `elasticcode`; its data then goes where
that user can reach it without us opening any folder we did not create.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import time
from pathlib import Path
from urllib.parse import quote

import psutil
import psycopg2
from psycopg2 import sql

from ..errors import ServiceUnavailable
from ..security import new_password, pgpass_line, role_name_for, scram_verifier, write_private_file
from .files import VAR_ROOT, is_root, make_dir, traversable_by_others
from .pgbin import SYSTEM_USER, PgBin, find_binaries, system_user
from .processes import last_meaningful_line, live_process, pick_free_port, port_is_free, read_pid, run, wait_gone

ADMIN_ROLE = "elasticcode_admin"
SERVICE_ROLE = "elasticcode_agent"  # what agents and recorders log in as: a member of elasticcode_service
SERVICE_GROUP = "elasticcode_service"
API_ROLE = "elasticcode_apiserver"  # what the API server logs in as: a member of elasticcode_api (migration 0010)
API_GROUP = "elasticcode_api"
DATABASE = "elasticcode"
HOST = "127.0.0.1"
_RESERVED_ROLES = {"public", "none", "current_user", "current_role", "session_user", "system_user", ADMIN_ROLE,
                   SERVICE_ROLE, API_ROLE}


def app_role_for_login() -> str:
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # a container uid with no passwd entry
        login = f"u{os.getuid()}"
    role = role_name_for(login)
    # pg_* names and a few keywords are reserved by PostgreSQL itself.
    return "u_" + role[:61] if role.startswith("pg_") or role in _RESERVED_ROLES else role


# --- layout ----------------------------------------------------------------------------------

def choose_layout(home: Path) -> dict:
    if is_root() and not traversable_by_others(home):
        # The system user cannot reach home (e.g. /root is 0700): keep data in a folder of our own.
        base = VAR_ROOT / hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    else:
        base = home / "postgres"
    return {"base": str(base), "data": str(base / "data"), "log": str(base / "postgres.log"),
            "system_user": SYSTEM_USER if is_root() else None}


def _run_kwargs(pg: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # PGDATA, PGPORT... must not leak in
    env.update(LC_ALL="C", LANG="C")  # English messages, so the log lines we quote are readable
    kw: dict = {"cwd": pg["base"], "env": env}
    if pg.get("system_user"):
        uid, gid = system_user()
        env["HOME"] = pg["base"]
        kw.update(user=uid, group=gid, extra_groups=[])
    return kw


# --- password file and connections -----------------------------------------------------------

def pgpass_path(home: Path) -> Path:
    return home.resolve() / "pgpass"


def read_pgpass(home: Path) -> dict[str, str]:
    """role -> password from our own password file (libpq escaping undone)."""
    out = {}
    try:
        text = pgpass_path(home).read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        fields, cur, esc = [], "", False
        for ch in line:
            if esc:
                cur, esc = cur + ch, False
            elif ch == "\\":
                esc = True
            elif ch == ":":
                fields, cur = fields + [cur], ""
            else:
                cur += ch
        if len(fields) == 4:
            out[fields[3]] = cur
    return out


def write_pgpass(home: Path, passwords: dict[str, str]) -> None:
    write_private_file(pgpass_path(home), "".join(pgpass_line(HOST, r, p) for r, p in passwords.items()))


def url(home: Path, port: int, role: str) -> str:
    return (f"postgresql+psycopg2://{role}@{HOST}:{port}/{DATABASE}"
            f"?passfile={quote(str(pgpass_path(home)), safe='/')}")


def connect(home: Path, port: int, role: str = ADMIN_ROLE, dbname: str = "postgres", timeout: int = 5):
    # password="" stops a PGPASSWORD meant for another server from overriding our passfile.
    return psycopg2.connect(host=HOST, port=port, user=role, dbname=dbname, password="",
                            passfile=str(pgpass_path(home)), connect_timeout=timeout)


def _wait_connect(home: Path, port: int, log: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            connect(home, port, timeout=3).close()
            return
        except psycopg2.OperationalError as exc:
            if time.monotonic() > deadline or "authentication failed" in str(exc):
                reason = last_meaningful_line(str(exc))
                raise ServiceUnavailable(f"PostgreSQL runs on {HOST}:{port} but refuses connections: {reason}; "
                                         f"check {pgpass_path(home)} and {log}") from None
            time.sleep(0.2)


# --- lifecycle -------------------------------------------------------------------------------

def postmaster(pg: dict | None) -> psutil.Process | None:
    """The running postmaster of our data dir, if any (postmaster.pid is authoritative)."""
    if not pg:
        return None
    data = Path(pg["data"])
    proc = live_process(read_pid(data / "postmaster.pid"), "postgres")
    try:  # a reused pid may belong to another postgres (e.g. the system one): it must sit in our data dir
        return proc if proc and os.path.samefile(proc.cwd(), data) else None
    except (psutil.Error, OSError):
        return None


def running_port(pg: dict) -> int:
    try:
        return int((Path(pg["data"]) / "postmaster.pid").read_text().splitlines()[3])
    except (OSError, IndexError, ValueError):
        return pg["port"]


def _set_conf(data: Path, port: int) -> None:
    settings = {"listen_addresses": "'127.0.0.1'", "port": str(port), "unix_socket_directories": "''",
                "password_encryption": "'scram-sha-256'"}
    auto = data / "postgresql.auto.conf"
    old = auto.read_text()
    keep = [ln for ln in old.splitlines() if ln.split("=", 1)[0].strip() not in settings]
    new = "\n".join(keep + [f"{k} = {v}" for k, v in settings.items()]) + "\n"
    if new != old:
        with open(auto, "r+") as f:  # rewrite in place: keeps the owner (postgres' user) and mode
            f.write(new)
            f.truncate()


def _initdb(home: Path, pgbin: PgBin, pg: dict, app_role: str, kw: dict, progress) -> None:
    data = Path(pg["data"])
    progress(f"initialising PostgreSQL {pgbin.major} in {data}")
    passwords = {ADMIN_ROLE: new_password(), app_role: new_password()}
    write_pgpass(home, passwords)  # first, so a working cluster never exists without its passwords
    pwfile = Path(pg["base"]) / ".initdb-pw"
    write_private_file(pwfile, passwords[ADMIN_ROLE] + "\n")
    try:
        if "user" in kw:
            os.chown(pwfile, kw["user"], kw["group"])
        rc, out = run([str(pgbin.bin / "initdb"), "-D", str(data), "-U", ADMIN_ROLE, "--auth-host=scram-sha-256",
                       "--auth-local=scram-sha-256", "--encoding=UTF8", "--no-locale", f"--pwfile={pwfile}"],
                      "initdb", timeout=300, **kw)
    finally:
        pwfile.unlink(missing_ok=True)
    if rc:
        raise ServiceUnavailable(f"PostgreSQL initdb failed: {last_meaningful_line(out)}; "
                                 f"fix that, or remove {data} to start afresh")


def _password(home: Path, passwords: dict[str, str], role: str) -> str:
    """The role's password from the password file, generated and kept there on first use."""
    if role not in passwords:
        write_pgpass(home, {**passwords, role: new_password()})
        passwords.update(read_pgpass(home))
    return passwords[role]


def _ensure_db_and_role(home: Path, port: int, app_role: str) -> None:
    passwords = read_pgpass(home)
    with contextlib.closing(connect(home, port)) as conn:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if not cur.fetchone():
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(ADMIN_ROLE)))
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (app_role,))
        if not cur.fetchone():
            # Only the SCRAM verifier reaches the server (and any statement log), never the password.
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                sql.Identifier(app_role), sql.Literal(scram_verifier(_password(home, passwords, app_role)))))


def ensure_service_role(home: Path, port: int) -> str:
    """The agents' login role: no superuser, no BYPASSRLS, no CREATEROLE/CREATEDB; what it may do
    comes from its membership of elasticcode_service (migration 0003). Its generated password is
    kept in the password file like the others. Returns the role name."""
    return _ensure_group_login(home, port, SERVICE_GROUP, sql.SQL("NOLOGIN"), SERVICE_ROLE)


def ensure_api_role(home: Path, port: int) -> str:
    """The API server's login role, made like the agents': no superuser, no BYPASSRLS, and no
    rights but its membership of elasticcode_api, which may only switch to the roles of users who
    asked for a token (migration 0010). Returns the role name."""
    return _ensure_group_login(home, port, API_GROUP, sql.SQL("NOLOGIN NOINHERIT"), API_ROLE)


def _ensure_group_login(home: Path, port: int, group: str, group_attributes: sql.Composable, role: str) -> str:
    """`role`, a login of `group` and nothing more, its generated password in the password file."""
    passwords = read_pgpass(home)
    with contextlib.closing(connect(home, port)) as conn:
        conn.autocommit = True
        cur = conn.cursor()
        # The migrations make the group roles too; whichever runs first wins (both tolerate the other).
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (group,))
        if not cur.fetchone():
            cur.execute(sql.SQL("CREATE ROLE {} {}").format(sql.Identifier(group), group_attributes))
        verifier = scram_verifier(_password(home, passwords, role))
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        # ALTER as well: a role left by an older stack must lose any attribute it should not have.
        verb = sql.SQL("ALTER") if cur.fetchone() else sql.SQL("CREATE")
        cur.execute(sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION "
                            "PASSWORD {}").format(verb, sql.Identifier(role), sql.Literal(verifier)))
        cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role)))
    return role


def _clear_stale_pid(pg: dict) -> None:
    # After a crash the pid in postmaster.pid may belong to an unrelated process, and postgres
    # would then refuse to start ("lock file already exists").
    pidfile = Path(pg["data"]) / "postmaster.pid"
    if pidfile.exists() and postmaster(pg) is None:
        pidfile.unlink(missing_ok=True)


def up(home: Path, pg: dict | None, app_role: str, progress) -> dict:
    """Start (initialising on first use) and return the updated state section."""
    pg = dict(pg or choose_layout(home))  # no state (lost?): the layout is derived from home alone
    if postmaster(pg):
        port = running_port(pg)
        _wait_connect(home, port, pg["log"], seconds=10)
        return {**pg, "port": port}
    base, data, log = Path(pg["base"]), Path(pg["data"]), Path(pg["log"])
    if is_root():
        if base.parent == VAR_ROOT:
            make_dir(VAR_ROOT, 0o755)
        uid, gid = system_user()
        if make_dir(base, 0o700):
            os.chown(base, uid, gid)  # a folder we just created for postgres' own user
    else:
        make_dir(base, 0o700)
    version_file = data / "PG_VERSION"
    major = int(version_file.read_text().split(".")[0]) if version_file.exists() else None
    saved = Path(pg.get("bin") or "/nonexistent")
    if major and pg.get("major") == major and (saved / "pg_ctl").is_file():
        pgbin = PgBin(saved, major, pg.get("source", "saved"))
    else:
        pgbin = find_binaries(major)
    kw = _run_kwargs(pg)
    if major is None:
        _initdb(home, pgbin, pg, app_role, kw, progress)
    elif ADMIN_ROLE not in read_pgpass(home):
        raise ServiceUnavailable(f"the password file {pgpass_path(home)} lacks the admin password for the private "
                                 f"database in {data}; restore it, or remove {base} to start afresh (its data is lost)")
    port = pg.get("port")
    if not port or not port_is_free(port):
        new = pick_free_port(HOST)
        if port:
            progress(f"port {port} is taken; PostgreSQL moves to {new}")
        port = new
    _set_conf(data, port)
    _clear_stale_pid(pg)
    progress(f"starting PostgreSQL {pgbin.major} on {HOST}:{port}")
    offset = log.stat().st_size if log.exists() else 0
    rc, out = run([str(pgbin.bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"],
                  "pg_ctl start", timeout=90, **kw)
    if rc:
        raise ServiceUnavailable(f"PostgreSQL did not start: {_new_log_line(log, offset, out)}; see {log}")
    pg = {**pg, "port": port, "bin": str(pgbin.bin), "major": pgbin.major, "source": pgbin.source}
    try:
        _wait_connect(home, port, str(log))
        _ensure_db_and_role(home, port, app_role)
    except BaseException:
        with contextlib.suppress(Exception):  # leave no server running that nobody can use
            down(pg, lambda msg: None)
        raise
    return pg


def _new_log_line(log: Path, offset: int, fallback: str) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        text = ""
    return last_meaningful_line(text or fallback)


def down(pg: dict | None, progress) -> bool:
    proc = postmaster(pg)
    if not proc:
        return False
    progress("stopping PostgreSQL")
    pg_ctl = Path(pg.get("bin") or "") / "pg_ctl"
    if pg_ctl.is_file():
        rc, out = run([str(pg_ctl), "-D", pg["data"], "-m", "fast", "-w", "-t", "60", "stop"],
                      "pg_ctl stop", timeout=90, **_run_kwargs(pg))
    else:  # binaries gone (uninstalled?): SIGINT is what pg_ctl -m fast sends
        proc.send_signal(2)
        rc, out = 0, ""
    if rc or not wait_gone(proc, 30):
        raise ServiceUnavailable(f"PostgreSQL did not stop: {last_meaningful_line(out)}; see {pg['log']}, "
                                 f"or stop it with kill -INT {proc.pid}")
    return True
