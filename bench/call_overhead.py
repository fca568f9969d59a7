"""What recording costs: an ElasticCode socket call against the same raw Celery task, same broker,
same settings, same machine, in one run (ratios, not seconds, are what to compare).

    python bench/call_overhead.py [redis://127.0.0.1:6379/14] [calls]

Measures round trips (send + wait for the result, one at a time) in alternating rounds, the
throughput of a burst, and the extra latency of one plug hop.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def main(broker: str = "redis://127.0.0.1:6379/14", calls: int = 300) -> None:
    sys.path.insert(0, str(FIXTURES))
    from elasticcode.runtime import naming
    from elasticcode.runtime.app import make_app
    from elasticcode.runtime.connections import redis_client
    from elasticcode.runtime.routes import PlugRoute, Route, RouteTable, publish
    from elasticcode.runtime.workerspec import SocketSpec, WorkerSpec

    client = redis_client(broker)
    client.flushdb()
    env = {**os.environ, "BENCH_BROKER": broker, "PYTHONPATH": f"{FIXTURES}:{os.environ.get('PYTHONPATH', '')}"}
    tmp = Path(tempfile.mkdtemp(prefix="ecbench"))
    owner = "bench"
    sockets = (SocketSpec("b.echo", "echo", "b.echo", "bq.bench"), SocketSpec("b.source", "echo", "b.source", "bq.bench"),
               SocketSpec("b.add_one", "add_one", "b.add_one", "bq.bench"))
    key = uuid.uuid4().hex  # the worker runs calls signed with its owner's key (runtime/signing.py)
    WorkerSpec(processor="bench", owner=owner, module="benchfuncs", import_path=str(FIXTURES), commit="bench", concurrency=1,
               broker=broker, backend=broker, sockets=sockets, loglevel="WARNING", call_key=key).write(tmp / "spec.json")
    from elasticcode.runtime import signing

    signing.sign_as(owner, key)
    as_owner = {naming.H_USER: owner}
    table = RouteTable()
    for sock in sockets:
        plugs = (PlugRoute("hop", "RESULT", "b.add_one", owner, "x"),) if sock.name == "b.source" else ()
        table.add(Route(sock.name, owner, sock.task, sock.queue, "bench", sock.function, plugs=plugs,
                        join=("x",) if sock.name == "b.add_one" else (), processor_status="running"))
    publish(client, table.dumps())
    workers = [
        start([sys.executable, "-m", "celery", "-A", "rawapp", "worker", "-P", "prefork", "-c", "1", "-Q", "raw",
               "--loglevel", "WARNING", "--without-gossip", "--without-mingle"], env, tmp / "raw.log"),
        start([sys.executable, *(os.environ.get("BENCH_EC_WORKER", "-m elasticcode.runtime.worker").split()),
               "--spec", str(tmp / "spec.json")], env, tmp / "ec.log"),
    ]
    app = make_app(broker, broker)
    try:
        time.sleep(3)
        for name, queue in (("raw.echo", "raw"), ("b.echo", "bq.bench")):
            app.send_task(name, args=[0], queue=queue, headers=as_owner).get(timeout=60)  # warm both

        def round_trip(name: str, queue: str) -> float:
            t = time.perf_counter()
            app.send_task(name, args=[1], queue=queue, headers=as_owner).get(timeout=30)
            return time.perf_counter() - t

        raw, ours = [], []
        for _ in range(calls // 50):  # alternate in rounds so machine noise hits both alike
            raw += [round_trip("raw.echo", "raw") for _ in range(25)]
            ours += [round_trip("b.echo", "bq.bench") for _ in range(25)]
        r, o = statistics.median(raw), statistics.median(ours)
        print(f"round trip, median of {len(raw)}: raw Celery {r * 1000:.2f} ms, ElasticCode {o * 1000:.2f} ms, "
              f"ratio {o / r:.2f}")

        def burst(name: str, queue: str, n: int) -> float:
            t = time.perf_counter()
            results = [app.send_task(name, args=[i], queue=queue, headers=as_owner) for i in range(n)]
            for res in results:
                res.get(timeout=120)
            return n / (time.perf_counter() - t)

        br, bo = burst("raw.echo", "raw", calls), burst("b.echo", "bq.bench", calls)
        print(f"burst of {calls}: raw Celery {br:.0f} calls/s, ElasticCode {bo:.0f} calls/s, ratio {br / bo:.2f}")

        hops = []
        for _ in range(50):
            tracking = str(uuid.uuid4())
            t = time.perf_counter()
            app.send_task("b.source", args=[1], queue="bq.bench", task_id=tracking,
                          headers={naming.H_TRACKING: tracking, **as_owner}).get(timeout=30)
            first = time.perf_counter()
            app.AsyncResult(naming.join_call_id("b.add_one", tracking)).get(timeout=30)
            hops.append((time.perf_counter() - first, first - t))
        hop = statistics.median(h for h, _ in hops)
        print(f"plug hop: the plugged call's result arrives {hop * 1000:.2f} ms after the source's (median of 50)")
        print(f"events written to the stream: {client.xlen(naming.EVENTS_STREAM)}")
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(20)
        client.flushdb()


if __name__ == "__main__":
    main(*(sys.argv[1:2] or []), *([int(sys.argv[2])] if len(sys.argv) > 2 else []))
