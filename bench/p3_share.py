"""Where P3's cores go: the CPU each process spends while N pool processes run CPU-bound calls.

    python bench/p3_share.py [rounds]

Brings up its own embedded stack, ElasticCode (processor `bench`, `-c N --min N`) and raw durable
Celery (prefork `-c N`) as `python -m bench` does, and runs P3 at N (16 calls of the ~50 ms
function, sent at once, gathered) in alternating rounds. For each system it prints the wall time
of a round and the CPU each kind of process spent per call (read from /proc, as
`bench/public_api.py` does): with N pool processes on N cores, whatever the others spend is taken
from the calls, and the pool's share of the N cores (its CPU over N x the wall time) is the best
speedup the round could show.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.__main__ import SPIN_SECONDS, calibrate  # noqa: E402
from bench.public_api import cpu_per_call  # noqa: E402
from bench.stack import FIXTURES, Stack  # noqa: E402

CALLS = 16


def main(rounds: int = 6) -> None:
    workers = os.cpu_count() or 2
    work = Path(tempfile.mkdtemp(prefix="ecp3"))
    stack = Stack(work / "home")
    systems = {}
    try:
        settings = stack.up()
        os.environ["BENCH_BROKER"] = settings.broker
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(FIXTURES), *filter(None, [os.environ.get("PYTHONPATH")])])
        sys.path.insert(0, str(FIXTURES))
        from bench.systems.elasticcode import System as ElasticCode
        from bench.systems.raw_celery import System as RawCelery

        for name, make in (("ElasticCode", lambda d: ElasticCode(d)), ("raw Celery", lambda d: RawCelery(d, settings="durable"))):
            (work / name).mkdir()
            systems[name] = make(work / name)
            systems[name].start(workers)
        work_steps = calibrate()
        walls: dict[str, list[float]] = {name: [] for name in systems}
        spent: dict[str, Counter] = {name: Counter() for name in systems}
        for r in range(rounds):
            for name in (list(systems) if r % 2 == 0 else list(reversed(systems))):
                system = systems[name]

                def run(system=system) -> float:
                    t = time.perf_counter()
                    system.cpu(CALLS, workers, work_steps)
                    return time.perf_counter() - t

                wall, cpu = cpu_per_call(run, CALLS)
                walls[name].append(wall)
                spent[name].update(cpu)
        print(f"P3 at N = {workers}: {rounds} rounds of {CALLS} calls of spin({work_steps}) (~{SPIN_SECONDS * 1000:.0f} ms)")
        print(f"  {'':40}" + "".join(f"{name:>14}" for name in systems))
        print(f"  {'round, median wall time (s)':40}" + "".join(f"{statistics.median(walls[n]):14.3f}" for n in systems))
        roles = sorted({role for c in spent.values() for role in c}, key=lambda role: -spent["ElasticCode"].get(role, 0.0))
        for role in roles:
            print(f"  {role + ', CPU ms per call':40}" + "".join(f"{spent[n].get(role, 0.0) / rounds:14.2f}" for n in systems))
        for name in systems:
            pool = spent[name].get("worker pool processes", 0.0) / rounds * CALLS / 1000
            share = pool / (workers * statistics.median(walls[name]))
            others = sum(v for k, v in spent[name].items() if k != "worker pool processes") / rounds
            print(f"  {name}: the pool had {share:.0%} of the {workers} cores; the other processes {others:.2f} ms per call")
    finally:
        for system in systems.values():
            try:
                system.stop()
            except Exception:  # noqa: BLE001 - the stack's teardown stops what is left
                pass
        stack.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(*([int(sys.argv[1])] if len(sys.argv) > 1 else []))
