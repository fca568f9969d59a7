"""Real agents for runtime tests: an agent subprocess, a git repository of functions, waiting helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import git

FUNCTIONS = '''
import os
import time


def do_something(message):
    return "TEXT:" + str(message)


def do_this(message):
    return "Do this: " + str(message)


def slow(x):
    time.sleep(3)
    return x


def nap(x, seconds=1.0):
    time.sleep(seconds)
    return x


def spin(x, seconds=0.02):
    """About `seconds` of pure Python (CPU-bound), then its argument."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return x


def one(x):
    return x


def two(x):
    return x * 10


def add_two(one, two):
    return one + two


def boom(x):
    raise ValueError("boom " + str(x))


def catch(error):
    return "caught " + error["error"]


def suicide(x):
    os.kill(os.getpid(), 9)
'''


def make_repo(path: Path, source: str = FUNCTIONS, module: str = "pyfi/processors/sample.py") -> git.Repo:
    target = path / module
    target.parent.mkdir(parents=True, exist_ok=True)
    for parent in target.relative_to(path).parents:
        if str(parent) != ".":
            (path / parent / "__init__.py").write_text("")
    target.write_text(source)
    repo = git.Repo.init(path, initial_branch="main")
    repo.git.add(A=True)
    actor = git.Actor("test", "test@example.com")
    repo.index.commit("functions", author=actor, committer=actor)
    return repo


def commit_change(repo: git.Repo, module: str, source: str) -> str:
    Path(repo.working_tree_dir, module).write_text(source)
    repo.git.add(A=True)
    actor = git.Actor("test", "test@example.com")
    return repo.index.commit("change", author=actor, committer=actor).hexsha


class AgentProcess:
    """`flow agent start` as a real subprocess with its own ELASTICCODE_HOME."""

    def __init__(self, home: Path, env: dict[str, str], hostname: str | None = None, cpus: int = 2):
        from elasticcode.runtime.naming import node_name

        hostname = hostname or node_name()  # the node `-h localhost` names
        self.home, self.log = home, home / "agent-test.log"
        self.env = {**os.environ, **env, "ELASTICCODE_HOME": str(home)}
        self.args = [sys.executable, "-m", "kernel_agent", "start", "--hostname", hostname, "--cpus", str(cpus),
                     "--stop-timeout", "10"]
        self.process: subprocess.Popen | None = None

    def start(self) -> AgentProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def flow_json(flow, *args):
    result = flow("--json", *args)
    assert result.code == 0, result
    return json.loads(result.out)


def use_services(monkeypatch, db_url: str, redis_url: str, service_url: str) -> dict[str, str]:
    """Point this process (and agents started with the returned env) at these services; agents
    connect as the service role (ELASTICCODE_SERVICE_DB), never as the admin."""
    from elasticcode.client import settings
    from elasticcode.client.dispatch import Dispatcher

    env = {"ELASTICCODE_DB": db_url, "ELASTICCODE_BROKER": redis_url, "ELASTICCODE_BACKEND": redis_url,
           "ELASTICCODE_SERVICE_DB": service_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    Dispatcher.forget_all()
    settings.reset_settings()
    return env
