"""Process hygiene: everything the harness starts dies with it, even on failure.

The harness and each system's driver make themselves *child subreapers* (Linux), so processes that
daemonize or get orphaned (a Parsl block launched in the background, a Celery pool child whose
parent died) are re-parented to them instead of to init, and `kill_tree` still finds them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

import psutil

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def descendants(pid: int | None = None) -> list[psutil.Process]:
    try:
        return psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.Error:
        return []


def kill_procs(procs: list[psutil.Process], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL what is left after `grace` seconds (psutil checks pid reuse)."""
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                proc.terminate()
                alive.append(proc)
        except psutil.Error:
            pass
    _, left = psutil.wait_procs(alive, timeout=grace)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=grace)


def kill_tree(pid: int | None = None, grace: float = 5.0) -> None:
    """Every descendant of `pid` (default: this process)."""
    kill_procs(descendants(pid), grace)


def stop_popen(proc: subprocess.Popen | None, grace: float = 20.0) -> None:
    """Stop a child started with start_new_session=True: its whole process group, then its stragglers."""
    if proc is None:
        return
    stragglers = descendants(proc.pid)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
    kill_procs(stragglers, 2.0)


def reap() -> None:
    """Collect orphans that were re-parented to us and have exited (no zombies left behind)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
