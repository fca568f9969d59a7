"""The background agent of `flow up`: started as `python -m kernel_agent start`, stopped by pid.

Started as a separate program (not imported), so the library does not depend on kernel_agent.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil


def pid_path(home: Path) -> Path:
    return home / "run" / "agent.pid"


def log_path(home: Path) -> Path:
    return home / "agent.log"


def running_pid(home: Path) -> int | None:
    try:
        pid = int(pid_path(home).read_text().strip())
        process = psutil.Process(pid)
        if process.is_running() and process.status() != psutil.STATUS_ZOMBIE and "kernel_agent" in " ".join(process.cmdline()):
            return pid
    except (OSError, ValueError, psutil.Error):
        pass
    return None


def start(home: Path, ini: Path) -> int | None:
    """Start the agent unless one runs; returns its pid (None when kernel_agent is not installed)."""
    if importlib.util.find_spec("kernel_agent") is None:
        return None
    pid = running_pid(home)
    if pid:
        return pid
    pid_path(home).parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ELASTICCODE_HOME=str(home), ELASTICCODE_INI=str(ini))
    with open(log_path(home), "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "kernel_agent", "start"], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    pid_path(home).write_text(str(process.pid))
    return process.pid


def stop(home: Path, timeout: float = 60.0, progress: Callable[[str], None] = lambda _: None) -> bool:
    """Stop the agent (it stops its workers warmly first); True if one was running."""
    pid = running_pid(home)
    if pid is None:
        return False
    progress(f"stopping agent (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running_pid(home) == pid:
        time.sleep(0.1)
    if running_pid(home) == pid:
        os.killpg(pid, signal.SIGKILL)
    pid_path(home).unlink(missing_ok=True)
    return True
