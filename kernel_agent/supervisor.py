"""One processor's worker process (started from the processor's venv, watched, restarted) and
the registry of the ones this agent runs, with the ones stopping after a rolling restart.

A worker runs sandboxed (`sandbox.py`): as root, as the worker system user; always with an
environment built from nothing and its own folder as HOME and cwd. Its pid and process group go
in a pidfile next to its spec, so a later agent (or `flow down`) can stop it if this one dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from elasticcode.embedded.workers import run_dir_for
from elasticcode.runtime.workerspec import (
    WORKER_MODULE,
    WorkerSpec,
    pidfile_for,
    retiring_pidfile_for,
    spec_path_for,
    write_pidfile,
)

from .sandbox import Sandbox, owner_sandbox


@dataclass
class WorkerProcess:
    spec: WorkerSpec
    python: Path
    run_dir: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    failure: str | None = field(default=None)
    log_offset: int = 0
    sandbox: Sandbox | None = None  # default: its owner's (see sandbox.owner_sandbox)
    cleared_pid: int | None = None  # the last dead process whose leftovers were cleared
    # What the worker process has confirmed it serves (`WorkerSpec.live_fingerprint`): it reads the
    # spec file when it starts; a later change is sent to it (`elasticcode.runtime.live`).
    applied_live: str | None = None
    served: dict[str, str] = field(default_factory=dict)  # task -> function, every one it registered
    retiring_pidfile: Path | None = None  # set once it is to stop after a successor (rolling restart)
    stop_deadline: float | None = None  # set once sent SIGTERM without waiting (`begin_stop`)

    def __post_init__(self) -> None:
        # The agent names `home/workers`; as root its workers cannot reach the home: run elsewhere.
        self.run_dir = run_dir_for(self.run_dir)
        if self.sandbox is None:
            self.sandbox = owner_sandbox(self.spec.owner)

    @property
    def processor(self) -> str:
        return self.spec.processor

    @property
    def spec_path(self) -> Path:
        return spec_path_for(self.run_dir, self.processor, self.spec.restart_fingerprint())

    @property
    def pidfile(self) -> Path:
        return self.retiring_pidfile or pidfile_for(self.run_dir, self.processor)

    def needs_restart(self, spec: WorkerSpec, python: Path) -> bool:
        """Whether `spec` takes a new process: new code, interpreter, broker..., or a task bound to
        another function than the one this process registered; sockets and pool range do not."""
        return (spec.restart_fingerprint() != self.spec.restart_fingerprint() or str(python) != str(self.python)
                or bool(spec.rebinds(self.served)))

    def update(self, spec: WorkerSpec) -> None:
        """The running worker's new spec (same code): written for it to read (see `live_pending`)."""
        assert self.sandbox is not None
        self.spec = spec
        self.served.update({sock.task: sock.function for sock in spec.sockets})
        self.sandbox.readable_file(self.spec_path, spec.to_json())

    @property
    def live_pending(self) -> bool:
        return self.alive() and self.applied_live != self.spec.live_fingerprint()

    @property
    def home_dir(self) -> Path:
        """The worker's own folder (its HOME and cwd; TMPDIR inside): the only one it may write."""
        return self.run_dir / self.processor

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"{self.processor}.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        sandbox = self.sandbox
        assert sandbox is not None
        sandbox.run_dir(self.run_dir)
        home = sandbox.owned_dir(self.home_dir)
        tmp = sandbox.owned_dir(home / "tmp")
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        sandbox.readable_file(self.spec_path, self.spec.to_json())  # broker URLs: 0600, or 0640 to workers
        # The agent's own file: the worker only gets the open descriptor (it cannot reopen it).
        log = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            self.process = subprocess.Popen(
                [str(self.python), "-m", WORKER_MODULE, "--spec", str(self.spec_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env=sandbox.env(self.python.parent, home, tmp), cwd=str(home), **sandbox.popen_kwargs(),
            )
        finally:
            os.close(log)
        self.started_at = time.monotonic()
        self.applied_live = self.spec.live_fingerprint()  # read when it starts
        self.served.update({sock.task: sock.function for sock in self.spec.sockets})
        write_pidfile(self.pidfile, self.process.pid, self.process.pid, self.spec_path)  # its own session

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def last_error(self) -> str:
        """The worker's one-line reason for exiting, from its log."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-50:]
        except OSError:
            return "worker exited"
        for line in reversed(lines):
            if line.startswith("elasticcode-worker-error: "):
                return line.split(": ", 1)[1]
        return next((line for line in reversed(lines) if line.strip()), "worker exited")

    def new_log_lines(self, limit: int = 1 << 20) -> list[str]:
        """Complete lines the worker wrote since the last call (for `flow listen -c log`)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                chunk = log.read(limit)
        except OSError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.log_offset += end + 1
        return chunk[: end + 1].decode(errors="replace").splitlines()

    def clear_after_death(self) -> int | None:
        """Once per death of the main process: kill what is left of its session (pool processes that
        outlived it could still run a call) and return the dead pid; None when nothing new died."""
        if self.process is None or self.alive() or self.cleared_pid == self.process.pid:
            return None
        self.cleared_pid = self.process.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.pid

    def restart_if_due(self) -> bool:
        """For a dead worker: schedule a restart with backoff, start it once due; True if started."""
        if self.next_start <= self.started_at:  # not yet scheduled since it died
            self.restarts += 1
            # Quick first retry, then back off so a crashing module does not spin the CPU.
            self.next_start = time.monotonic() + min(30.0, 0.5 * 2 ** min(self.restarts, 6))
        if time.monotonic() < self.next_start:
            return False
        self.start()
        return True

    def retire(self) -> None:
        """Before its successor starts (and takes the processor's pidfile): its own pidfile."""
        if self.process is not None and self.retiring_pidfile is None:
            self.retiring_pidfile = retiring_pidfile_for(self.run_dir, self.processor, self.process.pid)
            write_pidfile(self.retiring_pidfile, self.process.pid, self.process.pid, self.spec_path)

    def begin_stop(self, timeout: float) -> None:
        """Warm shutdown without waiting: SIGTERM now; `reap` finishes it."""
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + timeout
            if self.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGTERM)

    def reap(self) -> bool:
        """After `begin_stop`: True once it is gone (killed when past its stop timeout)."""
        if self.alive() and time.monotonic() < (self.stop_deadline or 0.0):
            return False
        self.stop(5.0)  # exited: clears its session; still running past the deadline: SIGKILL
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Warm shutdown: running calls finish (and are acked); queued ones wait in the broker.
        Then nothing of the worker's session is left (a pool process that outlived its parent)."""
        if self.process is None:
            return
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                # Only the main process: it stops consuming and lets its pool finish the running calls.
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(0 if self.stop_deadline and time.monotonic() >= self.stop_deadline else timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers of its session, if any
        self.pidfile.unlink(missing_ok=True)


@dataclass
class Retiring:
    """A worker replaced in a rolling restart: it runs until its successor consumes, then stops
    warmly (its running calls finish), so the node never runs fewer of the processor's processes."""

    proc_id: str
    worker: WorkerProcess
    successor: WorkerProcess
    since: float = field(default_factory=time.monotonic)


class Workers:
    """The worker processes this agent runs, by processor id (and the ones being replaced)."""

    def __init__(self, stop_timeout: float = 30.0):
        self.stop_timeout = stop_timeout
        self._by_processor: dict[str, WorkerProcess] = {}
        self.retiring: list[Retiring] = []

    def _drop_spec(self, worker: WorkerProcess) -> None:
        """A stopped worker's spec file, unless a running worker reads the same one."""
        if all(w.spec_path != worker.spec_path for w in self._by_processor.values()):
            worker.spec_path.unlink(missing_ok=True)

    def finish(self, retiring: Retiring) -> None:
        """A retired worker is gone."""
        self.retiring.remove(retiring)
        self._drop_spec(retiring.worker)

    def roll(self, proc_id: str, successor: WorkerProcess) -> None:
        """Start `successor` beside the processor's running worker, which retires (see `Retiring`)."""
        old = self._by_processor.get(proc_id)
        alive = old is not None and old.alive()
        if alive:
            old.retire()
            self.retiring.append(Retiring(proc_id, old, successor))
        self._by_processor[proc_id] = successor
        if old is not None and not alive:  # a dead one (waiting for its restart): nothing to wait for
            old.stop(self.stop_timeout)
            self._drop_spec(old)
        successor.start()

    def processes(self, proc_id: str) -> int:
        """Worker processes of the processor (one, and those still retiring)."""
        return (proc_id in self._by_processor) + sum(1 for r in self.retiring if r.proc_id == proc_id)

    def get(self, proc_id: str) -> WorkerProcess | None:
        return self._by_processor.get(proc_id)

    def add(self, proc_id: str, worker: WorkerProcess) -> None:
        self._by_processor[proc_id] = worker

    def forget(self, proc_id: str) -> None:
        """Drop a dead worker without stopping it (one that must not be restarted)."""
        self._by_processor.pop(proc_id, None)

    def stop(self, proc_id: str) -> None:
        for retiring in [r for r in self.retiring if r.proc_id == proc_id]:
            retiring.worker.begin_stop(self.stop_timeout)  # stopped in parallel with the current one
        worker = self._by_processor.pop(proc_id, None)
        if worker is not None:
            worker.stop(self.stop_timeout)
            self._drop_spec(worker)
        for retiring in [r for r in self.retiring if r.proc_id == proc_id]:
            retiring.worker.stop(self.stop_timeout)
            self.finish(retiring)

    def stop_all(self) -> None:
        for proc_id in list(self._by_processor) + [r.proc_id for r in self.retiring]:
            self.stop(proc_id)

    def items(self) -> list[tuple[str, WorkerProcess]]:
        return list(self._by_processor.items())

    def __iter__(self) -> Iterator[WorkerProcess]:
        return iter(list(self._by_processor.values()))

    def __contains__(self, proc_id: object) -> bool:
        return proc_id in self._by_processor

    def __len__(self) -> int:
        return len(self._by_processor)
