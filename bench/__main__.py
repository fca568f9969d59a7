"""`python -m bench`: ElasticCode, raw Celery (two lines), Dask, ipyparallel and Parsl on this machine,
the same workloads in one run, alternating, with the same worker count (the machine's cores).

    python -m bench [--smoke] [--calls N] [--repeats R] [--only SYSTEM ...] [--out DIR] [--workers N] [--keep]

Brings up its own embedded ElasticCode stack (`flow up` in a temporary ELASTICCODE_HOME) and every
system, each driven by a child process of its own (bench/driver.py); runs P1 (sequential round
trip of a no-op), P2 (N no-op calls sent then gathered), P3 (a CPU-bound function of about 50 ms at
1 process and at N), P4's hop (ElasticCode's plug and argument join, from the recorded timestamps;
raw Celery's on_success sending the next task, timed at the same points), and for ElasticCode P5
(history() of 100k calls) and P7 (provenance ingest); every repeat runs each workload on every
system in turn, in a rotating order, so noise hits them alike. Prints the table, writes
bench/results/<date>-<machine>.json and a bar chart .png next to it, and tears everything down.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from . import procs, report
from .stack import FIXTURES, Stack
from .systems import BY_NAME, SYSTEMS, missing

ROOT = Path(__file__).resolve().parent.parent
SPIN_SECONDS = 0.050  # P3's function: about 50 ms of pure Python
P1_ROUND = 20  # sequential round trips per system before the next system's turn

# name: (full run, --smoke)
SIZES = {
    "repeats": (3, 1),
    "p1_calls": (200, 30),  # sequential round trips per system and repeat
    "p2_calls": (5000, 200),  # burst size (the full run takes about 7 minutes on 2 cores; --calls to change it)
    "p3_calls": (16, 4),  # CPU-bound calls per run (at 1 process, then at N)
    "p4_hops": (50, 10),
    "p5_rows": (100_000, 20_000),
    "p7_calls": (10_000, 1000),  # x 4 events; the recorder takes 1,000 to 2,000 calls/s here
    "p7_sustain_s": (10, 2),  # then a load at 80% of that rate, this long: the lag under it
}


class Driver:
    """One system's driver process (bench/driver.py), spoken to in JSON lines."""

    def __init__(self, name: str, work_dir: Path, env: dict):
        self.name, self.dead = name, None
        self.dir = work_dir / name
        self.dir.mkdir(parents=True)
        self.log = self.dir / "driver.log"
        read, write = os.pipe()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "bench.driver", name, str(self.dir), str(write)],
                                         stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, pass_fds=(write,),
                                         env=env, cwd=ROOT, start_new_session=True, text=True)
        os.close(write)
        self.replies = os.fdopen(read, "r")

    def send(self, op: str, **args) -> None:
        if self.dead:
            raise RuntimeError(self.dead)
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.replies], [], [], timeout)
        line = self.replies.readline() if ready else None
        if not line:
            self.kill(f"no reply within {timeout:.0f} s" if line is None else "the driver died")
            raise RuntimeError(self.dead)
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise RuntimeError(reply["error"])
        return reply

    def call(self, op: str, timeout: float, **args) -> dict:
        self.send(op, **args)
        return self.receive(timeout)

    def tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self, why: str) -> None:
        self.dead = self.dead or f"{why} (log: {self.tail()})"
        procs.stop_popen(self.proc, grace=5)

    def stop(self, timeout: float = 120) -> None:
        """Ask the driver to stop its system; kill whatever is left of its tree either way."""
        stragglers = procs.descendants(self.proc.pid)
        if not self.dead and self.proc.poll() is None:
            try:
                self.call("stop", timeout)
            except Exception:  # noqa: BLE001 - killed below
                pass
            try:
                self.proc.stdin.close()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        procs.stop_popen(self.proc, grace=5)
        procs.kill_procs(stragglers, 2.0)
        self.replies.close()


def machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import psutil

    return {"hostname": platform.node(), "cores": os.cpu_count(), "cpu": cpu,
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "os": platform.platform(),
            "python": platform.python_version()}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def calibrate() -> int:
    """How many spin() steps make SPIN_SECONDS here: a first guess, then the best of 5 runs of it
    (the fastest run is the one a busy moment on the machine did not slow down)."""
    sys.path.insert(0, str(FIXTURES))
    from benchfuncs import spin

    steps = 100_000
    for _ in range(2):
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            spin(steps)
            best = min(best, time.perf_counter() - t)
        steps = max(1000, int(steps * SPIN_SECONDS / best))
    return steps


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few hundred calls per system, one repeat (CI)")
    parser.add_argument("--calls", type=int, help="P2 burst size (default 5000; 200 with --smoke)")
    parser.add_argument("--repeats", type=int, help="rounds of every workload on every system (default 3; 1 with --smoke)")
    parser.add_argument("--only", nargs="+", choices=[s.name for s in SYSTEMS], metavar="SYSTEM",
                        help=f"run these systems only: {', '.join(s.name for s in SYSTEMS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where the JSON and PNG go")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="worker processes per system (default: cores)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs) instead of deleting it")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    pick = 1 if args.smoke else 0
    sizes = {key: value[pick] for key, value in SIZES.items()}
    if args.calls:
        sizes["p2_calls"] = args.calls
    if args.repeats:
        sizes["repeats"] = args.repeats
    n = args.workers
    names = args.only or [s.name for s in SYSTEMS]
    names = [s.name for s in SYSTEMS if s.name in names]  # table order
    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
        "load": {"before": list(os.getloadavg()), "uptime_before": uptime()},
        "settings": {"smoke": args.smoke, "workers": n, **sizes, "spin_seconds_target": SPIN_SECONDS},
        "systems": {name: {"status": "not run", "repeats": [], "errors": []} for name in names},
    }
    systems = results["systems"]
    for name in names:
        lacking = missing(BY_NAME[name])
        if lacking:
            systems[name]["status"] = f"not installed ({', '.join(lacking)})"
    live = [name for name in names if systems[name]["status"] == "not run"]
    results["settings"]["spin_steps"] = work = calibrate()
    print(f"P3's function: spin({work}) ~ {SPIN_SECONDS * 1000:.0f} ms here; {n} workers per system; "
          f"systems: {', '.join(live) or 'none'}", flush=True)

    work_dir = Path(tempfile.mkdtemp(prefix="ecbench-"))
    stack, drivers = None, {}
    started = time.monotonic()
    try:
        broker = None
        if any(BY_NAME[name].needs_stack for name in live):
            stack = Stack(work_dir / "home")
            try:
                broker = stack.up().broker  # also points this process's environment at the stack
                print(f"stack up ({time.monotonic() - started:.0f} s)", flush=True)
            except Exception as exc:  # noqa: BLE001 - the rows that need it say why
                for name in [x for x in live if BY_NAME[x].needs_stack]:
                    systems[name]["status"] = f"failed: the embedded stack did not come up: {exc}"
                    live.remove(name)
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join([str(ROOT), str(FIXTURES), *filter(None, [os.environ.get("PYTHONPATH")])])}
        if broker:
            env["BENCH_BROKER"] = broker
        for name in live:
            drivers[name] = Driver(name, work_dir, env)
        start_timeout = 900 if not args.smoke else 300
        for name in live:
            drivers[name].send("start", workers=n)
        deadline = time.monotonic() + start_timeout
        for name in list(live):
            try:
                systems[name]["info"] = drivers[name].receive(max(1.0, deadline - time.monotonic()))["info"]
                systems[name]["status"] = "ok"
            except Exception as exc:  # noqa: BLE001
                systems[name]["status"] = f"failed to start: {exc}"
                drivers[name].kill("failed to start")
                live.remove(name)
        print(f"systems up ({time.monotonic() - started:.0f} s): {', '.join(live)}", flush=True)

        def attempt(name: str, key: str, op: str, timeout: float, **op_args) -> dict | None:
            """One command; a failure is recorded in the system's row and the run goes on."""
            if drivers[name].dead:
                return None
            try:
                return drivers[name].call(op, timeout, **op_args)
            except Exception as exc:  # noqa: BLE001
                systems[name]["errors"].append(f"{key}: {exc}")
                return None

        for r in range(sizes["repeats"]):
            order = live[r % len(live):] + live[:r % len(live)] if live else []
            reps = {name: {} for name in order}
            for name in order:  # a few calls first so nothing is timed cold
                attempt(name, "warm", "roundtrip", 120, count=5)
            # P1 in rounds of a few calls per system, so a burst of machine noise (seconds long on a
            # shared 2-core VM) falls on every system rather than on whichever was being timed.
            for start in range(0, sizes["p1_calls"], P1_ROUND):
                for name in order:
                    count = min(P1_ROUND, sizes["p1_calls"] - start)
                    reply = attempt(name, "p1", "roundtrip", 60 + 2 * count, count=count)
                    if reply:
                        reps[name].setdefault("p1", []).extend(reply["samples"])
            for name in order:
                reply = attempt(name, "p2", "burst", 120 + 0.2 * sizes["p2_calls"], n=sizes["p2_calls"])
                if reply:
                    reps[name]["p2"] = {"n": sizes["p2_calls"], "seconds": reply["seconds"]}
            for name in order:
                for procs_ in ((1, n) if r % 2 == 0 else (n, 1)):
                    key = "p3_1" if procs_ == 1 else "p3_n"
                    reply = attempt(name, key, "cpu", 300, n=sizes["p3_calls"], procs=procs_, work=work)
                    if reply:
                        reps[name][key] = reply["seconds"]
            for name in order:  # P4's hop, the same way in raw Celery (ElasticCode's comes below)
                if name.startswith("celery"):
                    reply = attempt(name, "plug_hop", "extra", 300, fn="plug_hop", args={"count": sizes["p4_hops"]})
                    if reply:
                        reps[name]["extra"] = {"plug_hop": reply["result"]}
            if "elasticcode" in order:
                extra = reps["elasticcode"]["extra"] = {}
                for op, arg in (("plug_hop", {"count": sizes["p4_hops"]}), ("join_hop", {"count": sizes["p4_hops"]}),
                                ("history_load", {"rows": sizes["p5_rows"]}), ("ingest", {"calls": sizes["p7_calls"], "sustain_s": sizes["p7_sustain_s"]})):
                    reply = attempt("elasticcode", op, "extra", 900, fn=op, args=arg)
                    if reply:
                        extra[op] = reply["result"]
            for name in order:
                systems[name]["repeats"].append(reps[name])
            results["load"].setdefault("during", []).append(list(os.getloadavg()))
            print(f"repeat {r + 1}/{sizes['repeats']} done ({time.monotonic() - started:.0f} s)", flush=True)
        if "parsl" in live and not drivers["parsl"].dead:
            try:
                systems["parsl"]["info"]["monitored_tasks"] = drivers["parsl"].call(
                    "extra", 60, fn="monitored_tasks")["result"]
            except Exception as exc:  # noqa: BLE001
                systems["parsl"]["errors"].append(f"monitoring database: {exc}")
    finally:
        for name, driver in drivers.items():
            driver.stop()
            if driver.dead and systems[name]["status"] == "ok":
                systems[name]["errors"].append(driver.dead)
        if stack is not None:
            stack.down()
        procs.kill_tree(grace=5)  # anything orphaned to us (we are a subreaper)
        procs.reap()
        if args.keep:
            print(f"work folder kept: {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["load"].update(after=list(os.getloadavg()), uptime_after=uptime())
    for system in systems.values():
        if system["status"] == "ok":
            system["metrics"] = report.summarize(system)
    results["targets"] = report.targets(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    procs.become_subreaper()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))  # runs the teardown in `finally`
    results = run(args)
    stem = f"{results['date'][:10]}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', results['machine']['hostname'])}"
    stem += "-smoke" if args.smoke else ""
    json_path = args.out / f"{stem}.json"
    report.write_json(results, json_path)
    try:
        report.plot(results, json_path.with_suffix(".png"))
    except Exception as exc:  # noqa: BLE001 - the table and the JSON stand without the chart
        print(f"no chart: {exc}", file=sys.stderr)
    print()
    print(report.table(results))
    print(f"\n{json_path} ({results['seconds']:.0f} s; load {results['load']['before'][0]:.2f} -> "
          f"{results['load']['after'][0]:.2f})")
    failed = [name for name, s in results["systems"].items() if s["status"] != "ok" and not s["status"].startswith("not installed")]
    incomplete = [name for name, s in results["systems"].items() if s["status"] == "ok"
                  and any(s["metrics"].get(key) is None for key in report.MAIN_KEYS)]
    return 1 if failed or incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
