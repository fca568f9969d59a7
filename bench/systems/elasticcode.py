"""ElasticCode through its public API only (`Socket(...)(x)`, `.delay`, plugs, an argument join,
`pipeline`/`parallel`, `history()`), provenance on, on the embedded stack the harness brought up.

Deployed with the `flow` CLI from a git repository made here: processor `bench` (`-c workers --min
workers`, so that like every other system it keeps `workers` processes warm) with the sockets of
P1, P2, P3 and P4, and processor `bench1` (`-c 1 --min 1`) for P3's single-process run.

P5 inserts its synthetic call rows directly into PostgreSQL (one INSERT ... generate_series, as the
schema's owner, the rows owned by the application role so that row-level security shows them to history()); P7 pushes synthetic call events
into the event stream, which the agent's recorder drains into PostgreSQL.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import datetime, timezone

from ..stack import flow, make_repo
from . import HOP_PAUSE, summary_ms
from . import System as Base

TIMEOUT = 600
SOCKETS = (  # name, function, processor
    ("bench.echo", "echo", "bench"), ("bench.spin", "spin", "bench"), ("bench.spin1", "spin", "bench1"),
    ("bench.source", "echo", "bench"), ("bench.target", "add_one", "bench"),
    ("bench.left", "left", "bench"), ("bench.right", "right", "bench"), ("bench.join", "join", "bench"),
)
PLUGS = (("bench.hop", "bench.source", "bench.target", None), ("bench.join.left", "bench.left", "bench.join", "left"),
         ("bench.join.right", "bench.right", "bench.join", "right"))
EVENTS_PER_CALL = 4  # queued, received, prerun, postrun: what one real call writes
SUSTAIN = 0.8  # P7's sustained load: this fraction of the ingest rate just measured
TICK = 0.05  # seconds between its pushes


class System(Base):
    def start(self, workers: int) -> dict:
        import elasticcode
        from elasticcode import Socket

        self.workers = workers
        repo = make_repo(self.work_dir / "repo")
        flow("add", "queue", "-n", "bq")
        flow("add", "processor", "-n", "bench", "-g", str(repo), "-m", "benchfuncs", "-c", str(workers), "--min", str(workers))
        flow("add", "processor", "-n", "bench1", "-g", str(repo), "-m", "benchfuncs", "-c", "1", "--min", "1")
        for name, function, processor in SOCKETS:
            flow("add", "socket", "-n", name, "-q", "bq", "-pn", processor, "-t", function)
        for name, source, target, argument in PLUGS:
            flow("add", "plug", "-n", name, "-s", source, "-t", target, *(("-a", argument) if argument else ()))
        self.s = {name: Socket(name=name) for name, _, _ in SOCKETS}
        # The first call waits for the agent to build the processors' environments and start them.
        self.s["bench.echo"].delay("warm").get(timeout=TIMEOUT)
        self.s["bench.spin1"].delay(1).get(timeout=TIMEOUT)
        self._until_plugged()
        return {"version": elasticcode.__version__, "processors": f"bench -c {workers} --min {workers}; bench1 -c 1 --min 1",
                "provenance": "on (events to the Redis stream, recorded in PostgreSQL by the agent)"}

    def _until_plugged(self) -> None:
        """Plugs reach the workers within about a second: wait until one hop and one join have happened."""
        from elasticcode import history, parallel

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            source = self.s["bench.source"].delay(0)
            source.get(timeout=TIMEOUT)
            run = parallel([self.s["bench.left"].p(0), self.s["bench.right"].p(0)])()
            run.get(timeout=TIMEOUT)
            time.sleep(1.0)
            hop = history(socket="bench.target", state="finished")
            joined = history(socket="bench.join", state="finished")
            if source.id in set(hop["parent"]) and len(joined):
                return
        raise RuntimeError("the plugs did not carry calls within 120 s")

    # -- P1, P2, P3 -------------------------------------------------------------------------------
    def roundtrip(self) -> None:
        self.s["bench.echo"](1)

    def _gather(self, handles) -> None:
        for handle in handles:
            handle.get(timeout=TIMEOUT)

    def burst(self, n: int) -> None:
        echo = self.s["bench.echo"]
        self._gather([echo.delay(i) for i in range(n)])

    def cpu(self, n_calls: int, procs: int, work: int) -> None:
        spin = self.s["bench.spin1" if procs == 1 else "bench.spin"]
        self._gather([spin.delay(work) for _ in range(n_calls)])

    # -- ElasticCode only -------------------------------------------------------------------------
    def _wait_history(self, socket: str, count: int, since: datetime, timeout: float = 120.0):
        from elasticcode import history

        deadline = time.monotonic() + timeout
        while True:
            frame = history(socket=socket, since=since, state="finished")
            if len(frame) >= count or time.monotonic() > deadline:
                return frame
            time.sleep(0.5)

    def plug_hop(self, count: int) -> dict:
        """P4: `count` calls of a source plugged into a target; from history(): target started - source finished."""
        from elasticcode import history

        since = datetime.now(timezone.utc)
        source = self.s["bench.source"]
        ids = []
        for i in range(count):
            handle = source.delay(i)
            handle.get(timeout=TIMEOUT)
            ids.append(handle.id)
            time.sleep(HOP_PAUSE)  # the hop alone: the next source call does not race the plugged one
        targets = self._wait_history("bench.target", count, since)
        sources = history(socket="bench.source", since=since, state="finished").set_index("id")
        hops = [(row.started - sources.loc[row.parent, "finished"]).total_seconds()
                for row in targets.itertuples() if row.parent in sources.index and row.parent in set(ids)]
        if len(hops) < count:
            raise RuntimeError(f"only {len(hops)} of {count} plugged calls were recorded")
        return summary_ms(hops)

    def join_hop(self, count: int) -> dict:
        """P4 (join): `parallel([left.p(i), right.p(i)])`, both plugged into join's arguments; from history():
        join started - the later of left and right finished. Also the workflows' own round trips."""
        from elasticcode import history, parallel, pipeline

        since = datetime.now(timezone.utc)
        left, right, echo = self.s["bench.left"], self.s["bench.right"], self.s["bench.echo"]
        par, pipe, roots = [], [], []
        for i in range(count):
            t = time.perf_counter()
            run = parallel([left.p(i), right.p(i)])()
            run.get(timeout=TIMEOUT)
            par.append(time.perf_counter() - t)
            roots.append(run.id)
            time.sleep(HOP_PAUSE)  # the join alone, as for the plug hop
            t = time.perf_counter()
            pipeline([echo.p(i), echo.p()])().get(timeout=TIMEOUT)
            pipe.append(time.perf_counter() - t)
        joins = self._wait_history("bench.join", count, since)
        sides = history(since=since, state="finished")
        sides = sides[sides["name"].isin(["bench.left", "bench.right"])].groupby("tracking")["finished"].max()
        hops = [(row.started - sides[row.tracking]).total_seconds() for row in joins.itertuples()
                if row.tracking in sides.index and row.tracking in set(roots)]
        if len(hops) < count:
            raise RuntimeError(f"only {len(hops)} of {count} joins were recorded")
        return {"join": summary_ms(hops), "parallel": summary_ms(par), "pipeline": summary_ms(pipe)}

    def _engine(self, admin: bool = False):
        from elasticcode.client.settings import default_settings
        from elasticcode.db.engine import get_engine

        settings = default_settings()
        return get_engine(settings.admin_url if admin else settings.require_db())

    def history_load(self, rows: int) -> dict:
        """P5: history() of `rows` calls (synthetic rows, inserted once, directly into PostgreSQL)."""
        from sqlalchemy import text

        from elasticcode import history
        from elasticcode.client.settings import default_dispatcher

        name, owner = f"bench.synthetic.{rows}", default_dispatcher().user
        # As the schema's owner (the application role may not write call rows), owned by the application role.
        with self._engine(admin=True).begin() as conn:
            have = conn.execute(text("SELECT count(*) FROM call WHERE name = :n"), {"n": name}).scalar_one()
            if have < rows:
                conn.execute(text(
                    "INSERT INTO call (id, name, state, owner, processor, tracking, parent, worker, host, received, "
                    "started, finished, duration, deliveries, created) SELECT gen_random_uuid(), :n, 'finished', :o, "
                    "'bench', gen_random_uuid(), gen_random_uuid(), 'bench@host', 'host', now(), now(), now(), 0.005, 1, "
                    "now() - make_interval(secs => i) FROM generate_series(1, :k) AS i"), {"n": name, "o": owner, "k": rows - have})
        t = time.perf_counter()
        frame = history(socket=name)
        seconds = time.perf_counter() - t
        if len(frame) != rows:
            raise RuntimeError(f"history() returned {len(frame)} rows, not {rows}")
        return {"seconds": seconds, "rows": rows}

    def ingest(self, calls: int, sustain_s: float = 0.0) -> dict:
        """P7: `calls` synthetic calls (EVENTS_PER_CALL events each) pushed into the event stream as fast as
        Redis takes them; the time until the recorder has them all in PostgreSQL. Then, for `sustain_s`
        seconds, calls at SUSTAIN (a fraction) of the rate just measured, pushed every TICK: the lag
        (events in the stream, not yet written, over the rate they come at) sampled before each push."""
        from elasticcode.client.settings import default_dispatcher
        from elasticcode.runtime import naming

        redis = default_dispatcher().redis
        name = f"bench.ingest.{uuid.uuid4().hex[:8]}"
        entries = self._synthetic_events(name, calls)
        while redis.xlen(naming.EVENTS_STREAM):  # start from an empty stream
            time.sleep(0.05)
        t0 = time.perf_counter()
        for start in range(0, len(entries), 1000):
            self._push(redis, entries[start:start + 1000])
        pushed = time.perf_counter() - t0
        # The recorder deletes entries from the stream once the rows that carry them are committed.
        self._drained(redis, name, calls)
        seconds = time.perf_counter() - t0
        events = calls * EVENTS_PER_CALL
        out = {"calls_per_s": calls / seconds, "events_per_s": events / seconds, "push_events_per_s": events / pushed,
               "seconds": seconds, "calls": calls, "events": events}
        if sustain_s > 0:
            out.update(self._sustained(redis, SUSTAIN * calls / seconds, sustain_s))
        return out

    def _sustained(self, redis, rate: float, seconds: float) -> dict:
        from elasticcode.runtime import naming

        name = f"bench.sustain.{uuid.uuid4().hex[:8]}"
        ticks = max(1, round(seconds / TICK))
        per_tick = max(1, round(rate * TICK))
        entries = self._synthetic_events(name, per_tick * ticks)
        step = per_tick * EVENTS_PER_CALL
        lags, start = [], time.perf_counter()
        for i in range(ticks):
            time.sleep(max(0.0, start + i * TICK - time.perf_counter()))
            lags.append(redis.xlen(naming.EVENTS_STREAM) / (rate * EVENTS_PER_CALL))
            self._push(redis, entries[i * step:(i + 1) * step])
        end = time.perf_counter()
        self._drained(redis, name, per_tick * ticks)
        lags.sort()
        return {"sustained_calls_per_s": per_tick / TICK, "sustained_s": ticks * TICK, "lag_median_s": statistics.median(lags),
                "lag_p95_s": lags[min(len(lags) - 1, int(0.95 * len(lags)))], "lag_max_s": lags[-1],
                "drain_s": time.perf_counter() - end}

    @staticmethod
    def _synthetic_events(name: str, calls: int) -> list[dict]:
        from elasticcode.client.settings import default_dispatcher
        from elasticcode.runtime.events import POSTRUN, PRERUN, QUEUED, RECEIVED, CallEvent, stream_fields

        dispatcher = default_dispatcher()
        dispatcher.sign_calls()  # the recorder writes only signed events
        now, user, entries = time.time(), dispatcher.user, []
        for _ in range(calls):
            call = str(uuid.uuid4())
            common = dict(socket=name, processor="bench", tracking=call, user=user)
            entries += [stream_fields(CallEvent(call, QUEUED, now, **common)),
                        stream_fields(CallEvent(call, RECEIVED, now, worker="bench@host", host="host", deliveries=1,
                                                **common)),
                        stream_fields(CallEvent(call, PRERUN, now, worker="bench@host", host="host", **common)),
                        stream_fields(CallEvent(call, POSTRUN, now, worker="bench@host", host="host", duration=0.001,
                                                result="1", **common))]
        return entries

    @staticmethod
    def _push(redis, entries: list[dict]) -> None:
        from elasticcode.runtime import naming

        pipe = redis.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd(naming.EVENTS_STREAM, fields)
        pipe.execute()

    def _drained(self, redis, name: str, calls: int) -> None:
        """Until the stream is empty; then every one of the `calls` must be in PostgreSQL, finished."""
        from sqlalchemy import text

        from elasticcode.runtime import naming

        deadline = time.monotonic() + TIMEOUT
        while redis.xlen(naming.EVENTS_STREAM) and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._engine().connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM call WHERE name = :n AND state = 'finished'"),
                                  {"n": name}).scalar_one()
        if stored != calls:
            raise RuntimeError(f"{stored} of {calls} calls of {name} in PostgreSQL once the stream was empty")

    def stop(self) -> None:
        pass  # the harness stops the stack (and with it the agent and its workers)
