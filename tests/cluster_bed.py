"""Several real nodes on one machine for pytest: the network namespaces of scripts/cluster.sh.

`ClusterBed(root, 3)` used as a context manager brings up node1..node3 (namespaces ecnode1..3,
addresses 10.231.0.11..13 on the bridge ecbr0, each with a hostname of its own) with the
machine's services forwarded to 10.231.0.1, starts a real agent per node with `start_agent`,
kills, cuts and heals nodes, and runs `cluster.sh down` on the way out whatever happened. The
bed is one per machine (fixed names): a lock file makes a second bed wait for the first.

`skip_unless_possible()` skips a test with the script's own one line where namespaces cannot be
made (not root, no iproute2 or socat, a container without CAP_NET_ADMIN), and `reachable(env)`
says why services that the nodes could not reach (a unix socket, another machine) are no use.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "cluster.sh"
GATEWAY = "10.231.0.1"  # the root namespace's address on the bridge, where the services are forwarded
LOCAL_HOSTS = ("127.0.0.1", "localhost")
URL_VARS = ("ELASTICCODE_DB", "ELASTICCODE_ADMIN_DB", "ELASTICCODE_SERVICE_DB", "ELASTICCODE_BROKER",
            "ELASTICCODE_BACKEND")
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "amqp": 5672, "pyamqp": 5672}
LOCK = Path("/run/elasticcode-cluster.lock")


def check() -> str | None:
    """None when network namespaces can be made here; otherwise the script's line saying why."""
    try:
        done = subprocess.run(["bash", str(SCRIPT), "check"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cluster.sh check could not run: {exc}"
    if done.returncode == 0:
        return None
    lines = (done.stderr + done.stdout).strip().splitlines()
    return lines[-1] if lines else f"cluster.sh check failed ({done.returncode})"


def skip_unless_possible() -> None:
    why = check()
    if why:
        pytest.skip(why)


def _port(url: str) -> int | None:
    parts = urlsplit(url)
    return parts.port or DEFAULT_PORTS.get(parts.scheme.split("+")[0])


def reachable(env: Mapping[str, str]) -> str | None:
    """None when every service URL in env is TCP on this machine's loopback (so the bed can
    forward it); otherwise why not."""
    for var in URL_VARS:
        url = env.get(var)
        if url and (urlsplit(url).hostname not in LOCAL_HOSTS or _port(url) is None):
            return f"{var} is not a TCP service on 127.0.0.1, which the namespaces cannot reach ({url.split('@')[-1]})"
    return None


def on_gateway(url: str) -> str:
    """The URL with the host 127.0.0.1 or localhost replaced by the gateway (user, password, port,
    path and query kept): the same service, as a node reaches it."""
    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS:
        return url
    userinfo, at, _ = parts.netloc.rpartition("@")
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{GATEWAY}{port}"))


def _passfile_on_gateway(url: str, folder: Path) -> str:
    """A URL naming a passfile (libpq's `passfile=`) whose lines are for 127.0.0.1 names a copy
    in `folder` that has the same lines for the gateway too: a password server still finds them."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = dict(query).get("passfile")
    if not given or not Path(given).is_file():
        return url
    lines = Path(given).read_text().splitlines()
    copy = folder / f"pgpass-{len(list(folder.glob('pgpass-*')))}"
    extra = [f"{GATEWAY}:{rest}" for line in lines for host, sep, rest in [line.partition(":")]
             if sep and host in LOCAL_HOSTS]
    copy.touch(0o600)
    copy.write_text("\n".join(lines + extra) + "\n")
    query = [(k, str(copy) if k == "passfile" else v) for k, v in query]
    return urlunsplit(parts._replace(query=urlencode(query, safe="/")))


def node_env(env: Mapping[str, str], folder: Path | None = None) -> dict[str, str]:
    """env with its service URLs moved to the gateway (and their passfiles copied into `folder`)."""
    moved = {k: on_gateway(v) if k in URL_VARS and v else v for k, v in env.items()}
    if folder is not None:
        moved = {k: _passfile_on_gateway(v, folder) if k in URL_VARS and v else v for k, v in moved.items()}
    return moved


@dataclass
class Node:
    index: int
    home: Path
    log: Path
    pid: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"node{self.index}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class ClusterBed:
    """N nodes of scripts/cluster.sh, each with a home and an agent log under `root`."""

    def __init__(self, root: Path, count: int, python: str = sys.executable):
        self.root, self.count, self.python = Path(root), count, python
        self.nodes = {i: Node(i, self.root / f"node{i}" / "home", self.root / f"node{i}" / "agent.log")
                      for i in range(1, count + 1)}
        self._lock: contextlib.AbstractContextManager | None = None  # the bed lock while it exists

    # -- the script -------------------------------------------------------------------------

    def script(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> str:
        """Run cluster.sh ARGS; its stdout. A failure raises with the script's output."""
        done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHON": self.python, **(env or {})})
        if done.returncode != 0:
            raise AssertionError(f"cluster.sh {' '.join(args)} failed ({done.returncode}): "
                                 f"{(done.stderr or done.stdout).strip()}")
        return done.stdout

    def up(self, env: Mapping[str, str]) -> ClusterBed:
        """The nodes, with the ports of env's service URLs forwarded to the gateway."""
        ports = sorted({p for var in URL_VARS if env.get(var) and (p := _port(env[var]))})
        self.script("up", str(self.count), env={"EC_CLUSTER_PORTS": " ".join(map(str, ports))})
        return self

    def start_agent(self, index: int, env: Mapping[str, str], cpus: int = 1, *agent_options: str) -> Node:
        """`python -m kernel_agent start --hostname nodeI --cpus C` in node I, its URLs on the gateway."""
        node = self.nodes[index]
        node.home.mkdir(parents=True, exist_ok=True)
        node.env = node_env(env, node.home)
        assignments = [f"{k}={v}" for k, v in node.env.items() if k != "ELASTICCODE_HOME"]
        out = self.script("agent", "--cpus", str(cpus), "--home", str(node.home), "--log", str(node.log),
                          str(index), *assignments, "--", *agent_options)
        node.pid = int(out.split()[-1])
        return node

    def kill(self, index: int) -> str:
        return self.script("kill", str(index)).strip()

    def cut(self, index: int) -> str:
        return self.script("cut", str(index)).strip()

    def heal(self, index: int) -> str:
        return self.script("heal", str(index)).strip()

    def exited(self) -> list[str]:
        """The nodes whose agent was started and is no longer running (killed, or it failed)."""
        import psutil

        def alive(pid: int) -> bool:
            try:
                return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                return False

        return [node.name for node in self.nodes.values() if node.pid is not None and not alive(node.pid)]

    def status(self) -> str:
        return self.script("status").strip()

    def down(self) -> None:
        self.script("down")

    # -- for failure messages ---------------------------------------------------------------

    def logs(self, tail: int = 25, words: tuple[str, ...] = ("ERROR", "WARNING", "Error", "Traceback")) -> str:
        """Each node's agent log (its last lines) and the lines of its workers' logs with `words`."""
        from elasticcode.embedded.workers import run_dirs

        out = []
        for node in self.nodes.values():
            out.append(f"--- {node.name}: agent log {node.log} (last {tail} lines)")
            out += node.output().splitlines()[-tail:]
            worker_lines = []
            for path in sorted(f for d in run_dirs(node.home) for f in d.rglob("*.log")):
                worker_lines += [f"{path.name}: {line}" for line in path.read_text(errors="replace").splitlines()
                                 if any(w in line for w in words)]
            if worker_lines:
                out.append(f"--- {node.name}: worker log lines with {'/'.join(words)} (last {tail})")
                out += worker_lines[-tail:]
        return "\n".join(out)

    # -- one bed per machine ----------------------------------------------------------------

    def __enter__(self) -> ClusterBed:
        from kernel_agent.venvs import file_lock  # the agents' own flock, held while the bed exists

        self._lock = file_lock(LOCK, timeout=900)
        self._lock.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.down()
        finally:
            if self._lock is not None:
                self._lock.__exit__(None, None, None)
                self._lock = None
