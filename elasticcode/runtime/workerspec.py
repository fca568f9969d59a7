"""The worker-spec contract: what an agent tells a processor's worker process to run.

The agent writes it as JSON next to the worker's log; `elasticcode.runtime.worker` reads it in
the processor's own virtual environment. Two fingerprints decide what a change costs: what
needs a new process (`restart_fingerprint`: the code, where it runs, its broker; with the
interpreter, which the agent adds) and what a running worker takes from the rewritten file
without a restart (`live_fingerprint`: its sockets and pool range, see `elasticcode.runtime.live`).
The worker's exit status and the pidfiles are part of the contract too.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_MAX_DELIVERIES = 5  # deliveries of one message before it is dead-lettered
# The worker's exit status when its module or a function cannot be loaded: the agent shows the
# worker's last `elasticcode-worker-error:` line as the processor's error and does not restart it.
EXIT_BAD_CODE = 3
SCALE_COOLDOWN = 10.0  # seconds without a new call before a worker's pool shrinks back towards its minimum
# What a running worker takes from its rewritten spec file, without a restart; every other field needs one.
LIVE_FIELDS = frozenset({"sockets", "concurrency", "min_concurrency", "start_concurrency", "scale_cooldown"})


@dataclass(frozen=True)
class SocketSpec:
    name: str  # socket name
    function: str  # function of the module it runs
    task: str  # Celery task name
    queue: str  # broker queue it is consumed from


@dataclass(frozen=True)
class WorkerSpec:
    processor: str
    owner: str  # role that owns the processor: its sockets' routes are looked up under it
    module: str
    import_path: str  # the checkout at the pinned commit, put first on sys.path
    commit: str
    concurrency: int  # the most pool processes (Celery's autoscale max); the agent lowers it to share the CPUs
    broker: str
    backend: str | None
    sockets: tuple[SocketSpec, ...] = field(default_factory=tuple)
    max_deliveries: int = DEFAULT_MAX_DELIVERIES
    loglevel: str = "INFO"
    min_concurrency: int = 0  # the fewest pool processes, kept while idle (Celery's autoscale min)
    # The autoscale max the worker starts with, None: `concurrency`. An agent that shares the node's
    # CPUs starts it at its minimum and raises it (no call may run beyond the node's share meanwhile).
    start_concurrency: int | None = None
    scale_cooldown: float = SCALE_COOLDOWN
    node: str = ""  # the node (agent `--hostname`) it runs on: its worker name and the calls' `host`
    # The owner's call key: the worker runs only calls signed with it, and signs its plugs' calls
    # with it (runtime/signing.py); None while the owner lacks RUN_TASK: every call is refused.
    call_key: str | None = None

    @property
    def queues(self) -> list[str]:
        return sorted({sock.queue for sock in self.sockets})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        data = json.loads(text)
        data["sockets"] = tuple(SocketSpec(**sock) for sock in data.get("sockets", ()))
        return cls(**data)

    @classmethod
    def read(cls, path: Path) -> WorkerSpec:
        return cls.from_json(path.read_text())

    def write(self, path: Path) -> None:
        path.write_text(self.to_json())

    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def _digest(self, live: bool) -> str:
        data = {k: v for k, v in asdict(self).items() if (k in LIVE_FIELDS) == live}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def restart_fingerprint(self) -> str:
        """What only a new worker process can change: commit, module, import path, broker and backend,
        owner, node, delivery limit, log level (the agent adds the interpreter: the virtual environment)."""
        return self._digest(live=False)

    def live_fingerprint(self) -> str:
        """What a running worker changes when told to read its spec file again: sockets, pool range."""
        return self._digest(live=True)

    def rebinds(self, served: Mapping[str, str]) -> list[str]:
        """Tasks this spec binds to another function than `served` (task -> function, what a worker
        registered): its pool processes keep their tasks, so that takes a new worker."""
        return sorted(s.task for s in self.sockets if served.get(s.task, s.function) != s.function)


# -- pidfiles: which process runs a worker, for whoever must stop it after its agent is gone ----

WORKER_MODULE = "elasticcode.runtime.worker"  # `python -m` of every worker: part of how a pid is recognised


def spec_path_for(run_dir: Path, processor: str, code: str = "") -> Path:
    """Where the agent writes the spec of `processor`'s worker (the log and pidfile sit next to it).
    `code` (the spec's `restart_fingerprint`): one file per code, so a worker being replaced by one
    on new code never reads the new code's spec (it reads its file again for a socket it lacks)."""
    return run_dir / (f"{processor}.{code[:16]}.json" if code else f"{processor}.json")


def pidfile_for(run_dir: Path, processor: str) -> Path:
    """The pidfile of `processor`'s worker: JSON with its pid, process group and spec path."""
    return run_dir / f"{processor}.pid"


def retiring_pidfile_for(run_dir: Path, processor: str, pid: int) -> Path:
    """The pidfile of a worker of `processor` that stops once its successor (named by
    `pidfile_for`) runs: orphans are found by every `*.pid` of the folder."""
    return run_dir / f"{processor}.retiring-{pid}.pid"


def write_pidfile(path: Path, pid: int, pgid: int, spec_path: Path) -> None:
    """Written (atomically, 0600) by the agent right after it started the worker."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps({"pid": pid, "pgid": pgid, "spec": str(spec_path)}))
    os.replace(tmp, path)


def read_pidfile(path: Path) -> dict | None:
    """{"pid", "pgid", "spec"} or None when missing or unreadable (a half-written one included)."""
    try:
        data = json.loads(path.read_text())
        return {"pid": int(data["pid"]), "pgid": int(data["pgid"]), "spec": str(data["spec"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None
