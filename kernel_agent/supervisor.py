"""One processor's worker process: started from the processor's venv, watched, restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

EXIT_BAD_CODE = 3  # elasticcode.runtime.worker: the module or a function could not be loaded


@dataclass
class WorkerProcess:
    processor: str
    spec: dict
    python: Path
    run_dir: Path
    fingerprint: str
    process: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    failure: str | None = field(default=None)
    log_offset: int = 0

    @property
    def spec_path(self) -> Path:
        return self.run_dir / f"{self.processor}.json"

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"{self.processor}.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.spec_path.write_text(json.dumps(self.spec))
        log = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)  # the worker sees its venv and its checkout, nothing of the agent's
        self.process = subprocess.Popen(
            [str(self.python), "-m", "elasticcode.runtime.worker", "--spec", str(self.spec_path)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            cwd=str(self.run_dir),
        )
        log.close()
        self.started_at = time.monotonic()

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

    def stop(self, timeout: float = 30.0) -> None:
        """Warm shutdown: running calls finish (and are acked); queued ones wait in the broker."""
        if not self.alive():
            return
        assert self.process is not None
        try:
            # Only the main process: it stops consuming and lets its pool finish the running calls.
            os.kill(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
