"""The services as processes: free ports, pid files, whether a pid is still ours, running a
command without hanging on its daemonized children, and the log line that explains a failure."""

from __future__ import annotations

import errno
import os
import random
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from ..errors import ServiceUnavailable

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


# --- processes -------------------------------------------------------------------------------

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


# --- commands and their output ---------------------------------------------------------------

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
            raise ServiceUnavailable(f"{what} did not finish within {timeout:.0f} s; "
                                     "check the machine's load and retry") from None
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
