"""What a user's call costs: `Socket(name)(x)` and `.delay(x)` through the public API, provenance on,
against the same function as a raw Celery task on the same broker, in one run.

    python bench/public_api.py [calls]

A quick two-way version of `python -m bench` (which also runs the peers, P3 to P7, and writes the
results): brings up its own embedded stack (bench/stack.py: `flow up` in a temporary
ELASTICCODE_HOME), deploys the function as a processor from a git repository made on the fly,
starts a raw Celery worker (prefork, one process, ElasticCode's app settings: acks late, reject on
worker lost, prefetch 1, JSON) on the stack's Redis, and alternates rounds of sequential round
trips so machine noise hits both alike; then a burst of `calls` sent at once and gathered. Prints
medians and ratios; tears it all down.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procs  # noqa: E402
from bench.stack import FIXTURES, Stack, flow, make_repo  # noqa: E402


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
              f"Socket(...)(x) {om * 1000:.2f} ms (p95 {o95 * 1000:.2f}), ratio {om / rm:.2f}")

        def burst(send) -> float:
            t = time.perf_counter()
            handles = [send(i) for i in range(calls)]
            for h in handles:
                h.get(timeout=300)
            return calls / (time.perf_counter() - t)

        br = burst(lambda i: app.send_task("raw.echo", args=[i], queue="raw"))
        bo = burst(echo.delay)
        print(f"burst of {calls}: raw Celery {br:.0f} calls/s, Socket.delay {bo:.0f} calls/s, ratio {br / bo:.2f}")
    finally:
        procs.stop_popen(raw_worker)
        stack.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(*([int(sys.argv[1])] if len(sys.argv) > 1 else []))
