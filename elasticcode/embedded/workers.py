"""Where an agent's workers keep their specs, logs and pidfiles, and stopping the workers an
agent left behind (killed with -9, the machine's OOM killer...).

Workers start in sessions of their own, so they outlive an agent that dies without stopping
them. Each one's pid and process group are in a pidfile next to its spec
(`elasticcode.runtime.workerspec.pidfile_for`); a starting agent, and `flow down` after it
stopped the agent, stop every worker a pidfile names, once sure the pid is still that worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
from pathlib import Path

import psutil

from ..runtime.workerspec import WORKER_MODULE, read_pidfile
from .files import VAR_ROOT, is_root
from .processes import wait_gone

log = logging.getLogger("elasticcode.agent")

WORKERS_ROOT = VAR_ROOT / "workers"  # as root: one folder per agent, which the worker user may enter


def agent_dir(home: Path) -> Path:
    """The folder an agent of `home` names for its workers."""
    return Path(home).expanduser().absolute() / "workers"


def run_dir_for(named: Path) -> Path:
    """Where the workers of the agent folder `named` really run: that folder itself, or as root
    (the agent's home is out of the worker user's reach) one of ours under WORKERS_ROOT."""
    if not is_root():
        return named
    return WORKERS_ROOT / hashlib.sha256(str(Path(named).resolve()).encode()).hexdigest()[:16]


def run_dirs(home: Path) -> list[Path]:
    """Every folder where workers of `home`'s agent may have left pidfiles (root or not)."""
    named = agent_dir(home)
    root = WORKERS_ROOT / hashlib.sha256(str(named.resolve()).encode()).hexdigest()[:16]
    return [d for d in dict.fromkeys([run_dir_for(named), named, root]) if d.is_dir()]


def worker_process(pid: int, spec: str) -> psutil.Process | None:
    """The live process `pid` if it is the worker of `spec` (a reused pid is someone else)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = proc.cmdline()
    except (psutil.Error, ValueError):
        return None
    return proc if WORKER_MODULE in cmdline and spec in cmdline else None


def stop_process_group(proc: psutil.Process, pgid: int, timeout: float) -> None:
    """Warm shutdown of a worker that is not our child: SIGTERM to its main process (running calls
    finish), then after `timeout` SIGKILL to its group; pool processes left behind are killed."""
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        family = [proc]
    with contextlib.suppress(psutil.Error):
        proc.send_signal(signal.SIGTERM)
    if not wait_gone(proc, timeout):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)  # the main process is alive: the group is still ours
        wait_gone(proc, 5)
    for member in family[1:]:
        with contextlib.suppress(psutil.Error):
            member.kill()  # psutil checks it is still the same process (pid + start time)


def stop_orphans_in(run_dir: Path, timeout: float = 30.0) -> int:
    """Stop the workers whose pidfiles are in `run_dir`; remove the pidfiles. How many ran."""
    stopped = 0
    for pidfile in sorted(run_dir.glob("*.pid")):
        info = read_pidfile(pidfile)
        proc = worker_process(info["pid"], info["spec"]) if info else None
        if proc is not None:
            log.warning("stopping worker pid %d (%s) left by a previous agent", info["pid"], pidfile.stem)
            stop_process_group(proc, info["pgid"], timeout)
            stopped += 1
        pidfile.unlink(missing_ok=True)
    return stopped


def stop_orphan_workers(home: Path, timeout: float = 30.0) -> int:
    """Stop the workers the agents of `home` left running (call it once the agent is stopped:
    a running agent's workers are named by the same pidfiles). How many were stopped."""
    return sum(stop_orphans_in(d, timeout) for d in run_dirs(home))
