"""What a user's call costs: `Socket(name)(x)` and `.delay(x)` through the public API, provenance on,
against the same function as a raw Celery task on the same broker, in one run.

    python bench/public_api.py [calls]

A quick two-way version of `python -m bench` (which also runs the peers, P3 to P7, and writes the
results): brings up its own embedded stack (bench/stack.py: `flow up` in a temporary
ELASTICCODE_HOME), deploys the function as a processor from a git repository made on the fly,
starts a raw Celery worker (prefork, one process, ElasticCode's app settings: acks late, reject on
worker lost, prefetch 1, JSON) on the stack's Redis, and alternates rounds of sequential round
trips so machine noise hits both alike; then a burst of `calls` sent at once and gathered, with
the CPU time each process spent on it, per call (this client, the worker's main and pool
processes, the agent and its recorder, Redis, PostgreSQL: read from /proc), which says where a
call's cost goes when the cores are the bound. Also where a sequential call's time goes: a
function that returns the time it ran splits each round trip into "to the function" (the client's
send, the broker, the worker's receipt and its pool) and "back" (the result's store, the caller's
wait and decoding), and for ElasticCode the recorded `received` splits the first at the worker's
receipt. Prints medians and ratios; tears it all down.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procs  # noqa: E402
from bench.stack import FIXTURES, Stack, flow, make_repo  # noqa: E402


def _processes() -> dict[int, tuple[int, float, str]]:
    """Every process: parent pid, CPU seconds so far (user + system), command line."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace") or stat.split()[1]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        found[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, cmd)
    return found


def _role(pid: int, seen: dict[int, tuple[int, float, str]]) -> str:
    parent, _, cmd = seen[pid]
    parent_cmd = seen.get(parent, (0, 0.0, ""))[2]
    for marker in ("elasticcode.runtime.worker", "celery"):
        # Celery retitles its processes where setproctitle is installed: "[celeryd: ...:ForkPoolWorker-1]".
        if marker in cmd and "worker" in cmd.lower():
            return "worker pool processes" if marker in parent_cmd else "worker main process"
    for marker, role in (("kernel_agent", "agent (recorder)"), ("elasticcode.api", "API server"),
                         ("redis-server", "Redis"), ("postgres", "PostgreSQL")):
        if marker in cmd:
            return role
    return "other (kernel threads...)"


def cpu_per_call(run, calls: int) -> tuple[float, Counter]:
    """Run `run()` (which makes `calls` calls); its wall time and each process role's CPU ms per call."""
    before, own = _processes(), time.process_time()
    seconds = run()
    spent, after = Counter({"client (this process)": time.process_time() - own}), _processes()
    for pid, (_, cpu, _) in after.items():
        if pid != os.getpid() and cpu > before.get(pid, (0, 0.0, ""))[1]:
            spent[_role(pid, after)] += cpu - before.get(pid, (0, 0.0, ""))[1]
    return seconds, Counter({role: 1000 * cpu / calls for role, cpu in spent.items()})


def split(app, clock, calls: int) -> None:
    """Sequential calls of `clock` (returns the time it ran) on both sides, in alternating rounds:
    the median time to the function and back, and for ElasticCode, from history(), where the
    worker's receipt falls."""
    from elasticcode import history

    def one(send, into: list, sent: list | None = None) -> None:
        t0 = time.time()
        handle = send()
        t1 = time.time()
        ran = handle.get(timeout=30)
        into.append((ran - t0, time.time() - ran, t1 - t0))
        if sent is not None:
            sent.append((handle.id, t0, ran))

    raw, ours, sent = [], [], []
    for _ in range(max(1, calls // 25)):
        for _ in range(25):
            one(lambda: app.send_task("raw.clock", args=[0], queue="raw"), raw)
        for _ in range(25):
            one(lambda: clock.delay(0), ours, sent)
    rows = history(socket="bench.clock").set_index("id")
    to_receipt = [rows.loc[call, "received"].timestamp() - t0 for call, t0, _ in sent if call in rows.index]
    receipt_to_function = [ran - rows.loc[call, "received"].timestamp() for call, _, ran in sent if call in rows.index]
    med = lambda values: statistics.median(values) * 1000  # noqa: E731
    print(f"a sequential call's split, medians of {len(raw)}, ms     {'raw Celery':>10}  {'ElasticCode':>11}")
    print(f"  send -> the function runs                 {med([a for a, _, _ in raw]):10.2f}  {med([a for a, _, _ in ours]):11.2f}")
    print(f"    of which the client's send returns      {med([c for _, _, c in raw]):10.2f}  {med([c for _, _, c in ours]):11.2f}")
    print(f"    of which send -> the worker's receipt   {'':>10}  {med(to_receipt):11.2f}")
    print(f"    of which receipt -> the function runs   {'':>10}  {med(receipt_to_function):11.2f}")
    print(f"  the function -> the caller has the result {med([b for _, b, _ in raw]):10.2f}  {med([b for _, b, _ in ours]):11.2f}")


def main(calls: int = 300) -> None:
    work = Path(tempfile.mkdtemp(prefix="ecpub"))
    stack = Stack(work / "home")
    raw_worker = None
    try:
        settings = stack.up()
        repo_dir = make_repo(work / "repo")
        flow("add", "queue", "-n", "bq")
        flow("add", "processor", "-n", "bench", "-g", str(repo_dir), "-m", "benchfuncs", "-c", "1")
        flow("add", "socket", "-n", "bench.echo", "-q", "bq", "-pn", "bench", "-t", "echo")
        flow("add", "socket", "-n", "bench.clock", "-q", "bq", "-pn", "bench", "-t", "clock")

        from elasticcode import Socket
        from elasticcode.runtime.app import make_app

        env = {**os.environ, "BENCH_BROKER": settings.broker, "PYTHONPATH": f"{FIXTURES}:{os.environ.get('PYTHONPATH', '')}"}
        raw_worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "rawapp", "worker", "-P", "prefork", "-c", "1", "-Q", "raw",
             "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        app = make_app(settings.broker, settings.backend, name="bench-client")
        echo = Socket(name="bench.echo")
        echo.delay("warm").get(timeout=600)  # waits for the agent to deploy the processor
        app.send_task("raw.echo", args=[0], queue="raw").get(timeout=120)

        def ours() -> float:
            t = time.perf_counter()
            echo(1)
            return time.perf_counter() - t

        def raw() -> float:
            t = time.perf_counter()
            app.send_task("raw.echo", args=[1], queue="raw").get(timeout=30)
            return time.perf_counter() - t

        r, o = [], []
        for _ in range(max(1, calls // 50)):
            r += [raw() for _ in range(25)]
            o += [ours() for _ in range(25)]
        rm, om = statistics.median(r), statistics.median(o)
        r95, o95 = statistics.quantiles(r, n=20)[-1], statistics.quantiles(o, n=20)[-1]
        print(f"round trip, median of {len(r)}: raw Celery {rm * 1000:.2f} ms (p95 {r95 * 1000:.2f}), "
              f"Socket(...)(x) {om * 1000:.2f} ms (p95 {o95 * 1000:.2f}), ElasticCode / raw {om / rm:.2f}")

        split(app, Socket(name="bench.clock"), max(50, calls // 10))

        def burst(send) -> float:
            t = time.perf_counter()
            handles = [send(i) for i in range(calls)]
            for h in handles:
                h.get(timeout=300)
            return time.perf_counter() - t

        wr, cr = cpu_per_call(lambda: burst(lambda i: app.send_task("raw.echo", args=[i], queue="raw")), calls)
        wo, co = cpu_per_call(lambda: burst(echo.delay), calls)
        print(f"burst of {calls}: raw Celery {calls / wr:.0f} calls/s, Socket.delay {calls / wo:.0f} calls/s, "
              f"ElasticCode / raw {wr / wo:.2f}")
        print(f"CPU per call in the burst, ms   {'raw Celery':>10}  {'ElasticCode':>11}")
        for role in sorted(set(cr) | set(co), key=lambda role: -co.get(role, 0.0)):
            print(f"  {role:29} {cr.get(role, 0.0):10.2f}  {co.get(role, 0.0):11.2f}")
        print(f"  {'all processes':29} {sum(cr.values()):10.2f}  {sum(co.values()):11.2f}")
    finally:
        procs.stop_popen(raw_worker)
        stack.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(*([int(sys.argv[1])] if len(sys.argv) > 1 else []))
