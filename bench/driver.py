"""One system's driver: a child process of the harness that starts the system, runs what the harness
asks (one JSON command a line on stdin) and times it, then tears the system down.

    python -m bench.driver SYSTEM WORK_DIR REPLY_FD

Replies (one JSON line each) go to REPLY_FD; stdout and stderr are the system's log. Each system
has its own client process, so one system's client threads never take the GIL from another's
measurement. When stdin closes (the harness died), the driver stops the system and exits.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

from . import procs
from .systems import BY_NAME


def run(system, cmd: dict) -> dict:
    op = cmd["op"]
    if op == "start":
        return {"info": system.start(cmd["workers"])}
    if op == "roundtrip":
        samples = []
        for _ in range(cmd["count"]):
            t = time.perf_counter()
            system.roundtrip()
            samples.append(time.perf_counter() - t)
        return {"samples": samples}
    if op == "burst":
        t = time.perf_counter()
        system.burst(cmd["n"])
        return {"seconds": time.perf_counter() - t}
    if op == "cpu":
        t = time.perf_counter()
        system.cpu(cmd["n"], cmd["procs"], cmd["work"])
        return {"seconds": time.perf_counter() - t}
    if op == "extra":
        return {"result": getattr(system, cmd["fn"])(**cmd.get("args", {}))}
    if op == "stop":
        system.stop()
        return {}
    raise ValueError(f"unknown op {op!r}")


def main(argv: list[str]) -> None:
    name, work_dir, reply_fd = argv[0], Path(argv[1]), int(argv[2])
    procs.become_subreaper()
    replies = os.fdopen(reply_fd, "w", buffering=1)
    entry = BY_NAME[name]
    module = importlib.import_module(f"bench.systems.{entry.module}")
    system = module.System(work_dir, **dict(entry.options))
    started = stopped = False
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            started = started or cmd["op"] == "start"  # a half-done start is stopped too
            try:
                reply = {"ok": True, **run(system, cmd)}
            except BaseException as exc:  # noqa: BLE001 - reported to the harness, which goes on
                traceback.print_exc()
                reply = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
            stopped = cmd["op"] == "stop"
            replies.write(json.dumps(reply) + "\n")
            if stopped:
                break
    finally:
        if started and not stopped:
            try:
                system.stop()
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
        procs.kill_tree()
        procs.reap()


if __name__ == "__main__":
    main(sys.argv[1:])
