"""P6: a call's cost when the broker is a network away. ElasticCode's public API and raw durable
Celery, each with workers reaching Redis directly (near) and through a delay of DELAY_MS each way
(far), in one run.

    python bench/latency.py [--delay-ms 1] [--calls 200] [--burst 1000]

The issue asks for `tc netem` on a veth pair; this machine's kernel has no netem qdisc, so the
delay is a proxy (`bench/delay_proxy.py`) in front of the stack's Redis socket: every chunk is held
DELAY_MS each way. Everything of the far side goes through it: the client's sends and result
waits, the worker's broker connection, its events and results, and the far node's agent (a
second agent, node `far`, where the far processor is placed). PostgreSQL stays direct.

Prints, per system, the median round trip near and far (P1, sequential calls, rounds alternated
so that machine noise hits all four alike), the difference in round trips of the added delay,
and the throughput of a burst far (P2). Tears it all down.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procs  # noqa: E402
from bench.stack import FIXTURES, Stack, flow, make_repo  # noqa: E402

ROUND = 20  # sequential calls per system before the next one's turn


def _wait_ready(proc: subprocess.Popen, what: str) -> None:
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"{what} did not start: {line.strip() or proc.poll()}")


def _ping_ms(url: str, count: int = 200) -> float:
    from elasticcode.runtime.connections import redis_client

    client = redis_client(url)
    client.ping()
    samples = []
    for _ in range(count):
        t = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python bench/latency.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, default=1.0, help="added delay each way (default 1: a 2 ms round trip)")
    parser.add_argument("--calls", type=int, default=200, help="sequential calls per system (default 200)")
    parser.add_argument("--burst", type=int, default=1000, help="calls in the far burst (default 1000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="worker processes per system (default: cores)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    n = args.workers

    procs.become_subreaper()
    work = Path(tempfile.mkdtemp(prefix="eclat"))
    stack = Stack(work / "home")
    started: list[subprocess.Popen] = []
    far_sock = None
    try:
        settings = stack.up()
        near_url = settings.broker
        target = Path(urlsplit(near_url).path)
        far_sock = target.with_name("delayed.sock")  # beside Redis's socket: reachable by exactly its users
        far_url = f"redis+socket://{far_sock}"
        proxy = subprocess.Popen([sys.executable, "-m", "bench.delay_proxy", str(far_sock), str(target), str(args.delay_ms)],
                                 stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent,
                                 start_new_session=True)
        started.append(proxy)
        _wait_ready(proxy, "the delay proxy")
        ping_near, ping_far = _ping_ms(near_url), _ping_ms(far_url)
        print(f"Redis PING, median: near {ping_near:.3f} ms, far {ping_far:.3f} ms "
              f"(+{ping_far - ping_near:.2f} ms; {args.delay_ms:g} ms each way asked)", flush=True)

        repo = make_repo(work / "repo")
        from elasticcode.embedded import stack as embedded_stack

        service_db = settings.service_db or embedded_stack.ensure_service_role(stack.home)
        env = {**os.environ, "ELASTICCODE_HOME": str(work / "far"), "ELASTICCODE_SERVICE_DB": service_db,
               "ELASTICCODE_DB": service_db, "ELASTICCODE_BROKER": far_url, "ELASTICCODE_BACKEND": far_url}
        (work / "far").mkdir()
        with open(work / "far-agent.log", "wb") as log:
            started.append(subprocess.Popen([sys.executable, "-m", "kernel_agent", "start", "--hostname", "far",
                                             "--cpus", str(n)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True))
        flow("add", "queue", "-n", "lq")
        for name, host in (("near", "localhost"), ("far", "far")):
            flow("add", "processor", "-n", name, "-g", str(repo), "-m", "benchfuncs", "-c", str(n), "--min", str(n),
                 "-h", host)
            flow("add", "socket", "-n", f"{name}.echo", "-q", "lq", "-pn", name, "-t", "echo")

        raw = {}
        for name, url in (("near", near_url), ("far", far_url)):
            raw_env = {**os.environ, "BENCH_BROKER": url, "BENCH_CELERY_SETTINGS": "durable",
                       "PYTHONPATH": os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")])}
            with open(work / f"celery-{name}.log", "wb") as log:
                started.append(subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "bench.systems.celery_app", "worker", "-P", "prefork",
                     "-c", str(n), "-Q", f"raw.{name}", "-n", f"raw-{name}@bench", "--loglevel", "WARNING",
                     "--without-gossip", "--without-mingle"],
                    env=raw_env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent,
                    start_new_session=True))
            raw[name] = _raw_sender(url, name)

        import elasticcode
        from elasticcode import Socket

        def use(url: str):
            return lambda: elasticcode.configure(broker=url, backend=url)  # the public API's own switch

        near, far = Socket(name="near.echo"), Socket(name="far.echo")
        # name: (what to do before its turn, one call's round trip, one call sent)
        systems = {
            "ElasticCode near": (use(near_url), lambda: near(1), near.delay),
            "ElasticCode far": (use(far_url), lambda: far(1), far.delay),
            "Celery near": (lambda: None, lambda: raw["near"](1).get(timeout=600), raw["near"]),
            "Celery far": (lambda: None, lambda: raw["far"](1).get(timeout=600), raw["far"]),
        }
        for setup, call, _ in systems.values():  # deployed and warm before anything is timed
            setup()
            deadline = time.monotonic() + 600
            while True:
                try:
                    call()
                    break
                except Exception:  # noqa: BLE001 - the far processor may still be deploying
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            for _ in range(10):
                call()
        samples: dict[str, list[float]] = {name: [] for name in systems}
        for start in range(0, args.calls, ROUND):
            order = list(systems) if (start // ROUND) % 2 == 0 else list(reversed(systems))
            for name in order:
                setup, call, _ = systems[name]
                setup()
                call()  # not timed: the first after a switch
                for _ in range(min(ROUND, args.calls - start)):
                    t = time.perf_counter()
                    call()
                    samples[name].append(time.perf_counter() - t)
        bursts = {}
        for name in ("Celery far", "ElasticCode far"):
            setup, _, send = systems[name]
            setup()
            t = time.perf_counter()
            handles = [send(i) for i in range(args.burst)]
            for h in handles:
                h.get(timeout=600)
            bursts[name] = args.burst / (time.perf_counter() - t)
        results = report(args, ping_near, ping_far, samples, bursts)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        for proc in reversed(started):
            procs.stop_popen(proc)
        stack.down()
        procs.kill_tree(grace=5)
        procs.reap()
        if far_sock is not None:
            far_sock.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def report(args: argparse.Namespace, ping_near: float, ping_far: float, samples: dict[str, list[float]],
           bursts: dict[str, float]) -> dict:
    """Print the figures; return them (milliseconds, calls/s)."""
    added = ping_far - ping_near
    medians = {name: statistics.median(s) * 1000 for name, s in samples.items()}
    p95 = {name: statistics.quantiles(s, n=20)[-1] * 1000 for name, s in samples.items()}
    print(f"\nP1, median of {args.calls} sequential calls (p95)")
    for name in samples:
        print(f"  {name:18} {medians[name]:7.2f} ms ({p95[name]:.2f})")
    round_trips = {}
    for system in ("ElasticCode", "Celery"):
        extra = medians[f"{system} far"] - medians[f"{system} near"]
        round_trips[system] = extra / added
        print(f"  {system}: far - near {extra:.2f} ms = {round_trips[system]:.1f} added round trips")
    ratios = {side: medians[f"ElasticCode {side}"] / medians[f"Celery {side}"] for side in ("near", "far")}
    print(f"  ElasticCode / Celery: near {ratios['near']:.2f}x, far {ratios['far']:.2f}x")
    p2 = bursts["ElasticCode far"] / bursts["Celery far"]
    print(f"\nP2, burst of {args.burst} far: Celery {bursts['Celery far']:.0f} calls/s, ElasticCode "
          f"{bursts['ElasticCode far']:.0f} calls/s, ElasticCode / Celery {p2:.2f}x")
    return {"delay_ms_each_way": args.delay_ms, "ping_ms": {"near": ping_near, "far": ping_far},
            "p1_median_ms": medians, "p1_p95_ms": p95, "added_round_trips": round_trips,
            "p1_ratio": ratios, "p2_calls_per_s": bursts, "p2_ratio": p2}


def _raw_sender(url: str, name: str):
    """Send the raw durable Celery app's echo (an app of its own on `url`) to queue raw.<name>."""
    from celery import Celery

    app = Celery(f"bench-raw-{name}", broker=url, backend=url, set_as_current=False)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                    result_accept_content=["json"], task_acks_late=True, task_reject_on_worker_lost=True,
                    worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True)
    return lambda x: app.send_task("durable.echo", args=[x], queue=f"raw.{name}")


if __name__ == "__main__":
    main()
