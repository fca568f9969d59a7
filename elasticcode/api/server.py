"""The API server as a background process of this home (`flow api start|stop|status`, `flow up`).

Started as `python -m elasticcode.api --host H --port P` (its log in `home/api.log`, its pid,
host and port in `home/run/api.json`), stopped by pid after checking the pid is still ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

from ..errors import ServiceUnavailable
from .settings import DEFAULT_HOST, DEFAULT_PORT

MODULE = "elasticcode.api"


def state_path(home: Path) -> Path:
    return home / "run" / "api.json"


def log_path(home: Path) -> Path:
    return home / "api.log"


def running(home: Path) -> dict | None:
    """{pid, host, port, url} of this home's API server, if it runs."""
    try:
        state = json.loads(state_path(home).read_text())
        process = psutil.Process(int(state["pid"]))
        if process.is_running() and process.status() != psutil.STATUS_ZOMBIE and MODULE in " ".join(process.cmdline()):
            return {**state, "url": f"http://{_url_host(state['host'])}:{state['port']}"}
    except (OSError, ValueError, KeyError, psutil.Error):
        pass
    return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _free(host: str, port: int) -> bool:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def start(home: Path, ini: Path, host: str = DEFAULT_HOST, port: int | None = None, timeout: float = 30.0) -> dict:
    """Start the server unless one runs; returns running()'s dict."""
    found = running(home)
    if found:
        return found
    if port is None:
        port = DEFAULT_PORT if _free(host, DEFAULT_PORT) else 0
    if port == 0:
        import socket

        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    elif not _free(host, port):
        raise ServiceUnavailable(f"port {port} on {host} is taken: choose another with --port")
    state_path(home).parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ELASTICCODE_HOME=str(home), ELASTICCODE_INI=str(ini))
    log = log_path(home)
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", MODULE, "--host", host, "--port", str(port),
                                    "--state", str(state_path(home))], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    state_path(home).write_text(json.dumps({"pid": process.pid, "host": host, "port": port}))
    url = f"http://{_url_host(host)}:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            state_path(home).unlink(missing_ok=True)
            raise ServiceUnavailable(f"the API server did not start: {_last_line(log, offset)} (see {log})")
        if _answers(url):
            return {"pid": process.pid, "host": host, "port": port, "url": url}
        time.sleep(0.2)
    stop(home)
    raise ServiceUnavailable(f"the API server did not answer within {timeout:g}s (see {log})")


def _last_line(log: Path, offset: int) -> str:
    with contextlib.suppress(OSError):
        with open(log, "rb") as f:
            f.seek(offset)
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("Error:", "ERROR"))]
        return (errors or lines or ["no output"])[-1]
    return "no output"


def stop(home: Path, timeout: float = 15.0) -> bool:
    found = running(home)
    state_path(home).unlink(missing_ok=True) if found is None else None
    if found is None:
        return False
    pid = int(found["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running(home):
        time.sleep(0.1)
    if running(home):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    state_path(home).unlink(missing_ok=True)
    return True
