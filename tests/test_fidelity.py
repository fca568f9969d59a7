"""Issue #13: the calling API Celery users type, results as pandas frames, a CLI that works in pipes,
and `flow task run` that says why it waits. Real agents, PostgreSQL and Redis throughout.

Expected workflow values come from Celery's rules, written out in `celery_rules` below, never
from our own code.
"""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from runtime_helpers import AgentProcess, make_repo
from sqlalchemy import text

import elasticcode
from elasticcode.client import api as client_api
from elasticcode.client.dispatch import Dispatcher, WaitingWarning
from elasticcode.client.handles import CallHandle, WorkflowHandle
from elasticcode.db.engine import get_engine
from elasticcode.errors import ElasticCodeError
from elasticcode.runtime.events import CALL_SUMMARY

pytestmark = pytest.mark.timeout(400)
ROOT = Path(__file__).resolve().parents[1]
FLOW = [str(Path(sys.executable).parent / "flow")]
DS = "pyfi.processors.sample.do_something"
DT = "pyfi.processors.sample.do_this"
STATS = "frames.stats"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# A processor whose function returns a DataFrame (its venv gets pandas from the requirements).
FRAMES = '''
import pandas as pd


def stats(size, seed=0):
    """`size` rows of a small deterministic measurement."""
    return pd.DataFrame({"size": [size] * size, "seed": [seed] * size,
                         "value": [float((i * 7 + seed) % 11) for i in range(size)]})
'''


def ds(*messages):  # the sample module's functions, evaluated here for expected values
    return "TEXT:" + "|".join(str(m) for m in messages)


def dt(*messages):
    return "Do this: " + ", ".join(str(m) for m in messages)


def expected_stats(size, seed=0) -> pd.DataFrame:
    return pd.DataFrame({"size": [size] * size, "seed": [seed] * size,
                         "value": [float((i * 7 + seed) % 11) for i in range(size)]})


class celery_rules:  # noqa: N801 - a namespace of Celery's signature/chain/group/chord rules
    """Celery's rules by hand: a signature called with inputs prepends them (task.s(*own)(x) runs
    task(x, *own)); a chain feeds each result to the next task, call-time inputs to the first; a
    group gives every member the same inputs, results in order; a chord runs its header as a group
    and prepends the list of results to its body, and `chord(header)(body)` makes `body` the body.
    (Real Celery also flattens a group nested in a group; the manual's nested result keeps the shape.)"""

    @staticmethod
    def s(*own, fn=ds):
        return lambda *inputs: fn(*inputs, *own)

    @staticmethod
    def chain(*tasks):
        def run(*inputs):
            value = tasks[0](*inputs)
            for task in tasks[1:]:
                value = task(value)
            return value
        return run

    @staticmethod
    def group(*tasks):
        return lambda *inputs: [task(*inputs) for task in tasks]

    @staticmethod
    def chord(header, body):
        return lambda *inputs: body(celery_rules.group(*header)(*inputs))


def run_listing(name: str, env: dict) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "workflows" / name)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def agent_network(services, home, flow, tmp_path):
    """The manual's sample processor and a pandas one, served by a real agent."""
    frames_repo = tmp_path / "frames"
    make_repo(frames_repo, FRAMES, module="frames/mod.py")
    sample = tmp_path / "pyfi-processors"
    make_repo(sample, (ROOT / "examples/pyfi-processors/pyfi/processors/sample.py").read_text())
    for args in (
        ("add", "queue", "-n", "q1"),
        ("add", "processor", "-n", "proc1", "-g", str(sample), "-m", "pyfi.processors.sample", "-c", "2"),
        ("add", "processor", "-n", "frames", "-g", str(frames_repo), "-m", "frames.mod", "-c", "1", "-rq", "pandas"),
        ("add", "socket", "-n", DS, "-q", "q1", "-pn", "proc1", "-t", "do_something"),
        ("add", "socket", "-n", DT, "-q", "q1", "-pn", "proc1", "-t", "do_this"),
        ("add", "socket", "-n", STATS, "-q", "q1", "-pn", "frames", "-t", "stats"),
    ):
        assert flow(*args).code == 0, args
    agent = AgentProcess(home / "agent", services).start()
    try:
        assert client_api.Socket(name=DS)("warm") == ds("warm")  # waits for the worker
        yield services
    finally:
        agent.stop()


def test_manual_listings_follow_celery_rules(agent_network):
    """Section 5.6 and listing 3 of 12.2, run as written: `_funnel(do_something("Four"))` sends the
    funnel's list of results to do_something("Four"), as Celery's chord(header)(body) does."""
    r = celery_rules
    _pipeline = r.chain(r.s("One"), r.s("Two"), r.group(r.s("Four"), r.s("Five")), r.s("Three"))
    _parallel = r.group(_pipeline, r.s("Six"), r.s("Seven"))
    _funnel = r.chord([r.s("Eight"), _parallel, r.s("Nine")], r.s("Four"))
    assert run_listing("parallel_workflow.py", agent_network).strip() == f"FUNNEL:  {_funnel()}"

    t = lambda *own: r.s(*own, fn=dt)  # noqa: E731
    _pipeline = r.chain(r.s("One"), r.s("Two"), r.group(t("Four"), t("Five")), t("Three"))
    _parallel = r.group(_pipeline, r.s("Six"), r.s("Seven"))
    _funnel = r.chord([r.s("Eight"), _parallel, r.s("Nine")], r.s("A"))
    _funnel2 = r.chord([_parallel, r.s("Ten")], r.s("B"))
    _funnel3 = r.chord([_funnel, _funnel2], r.s("Eleven"))
    assert run_listing("lambda_api.py", agent_network).strip().splitlines() == [str(_pipeline()), f"FUNNEL:  {_funnel3()}"]


def test_calling_api_like_celery(agent_network):
    do = client_api.Socket(name=DS)
    r = celery_rules

    run = client_api.parallel([do.p("a"), do.p("b")]).delay()
    assert isinstance(run, WorkflowHandle) and run.get(timeout=60) == r.group(r.s("a"), r.s("b"))()

    started = time.monotonic()
    run = client_api.pipeline([do.p("One"), do.p("Two")]).apply_async(countdown=1)
    assert isinstance(run, WorkflowHandle) and run.get(timeout=60) == r.chain(r.s("One"), r.s("Two"))()
    assert time.monotonic() - started >= 1.0  # the first call waited for its countdown

    call = do.p("x").delay()
    assert isinstance(call, CallHandle) and call.get(timeout=60) == r.s("x")()
    assert do.p("x").delay("in").get(timeout=60) == r.s("x")("in")  # given args come first, as in Celery
    assert do.apply_async(args=("y",), countdown=0.5).get(timeout=60) == ds("y")
    started = time.monotonic()
    at = do.apply_async(args=("e",), eta=datetime.now() + timedelta(seconds=1), expires=120)  # naive eta: local time
    assert at.get(timeout=60) == ds("e") and time.monotonic() - started >= 0.9
    assert isinstance(do.s("z")(), CallHandle)

    # Called with a value, a pipeline passes it to its first step, a parallel (and a funnel) to each branch.
    assert client_api.pipeline([do.p("a"), do.p("b")])("v").get(timeout=60) == r.chain(r.s("a"), r.s("b"))("v")
    assert client_api.parallel([do.p("a"), do.p("b")])("v").get(timeout=60) == r.group(r.s("a"), r.s("b"))("v")
    funnel_run = client_api.funnel([do.p("a"), do.p("b")], do.p("F")).apply_async(args=("v",))
    assert funnel_run.get(timeout=60) == r.chord([r.s("a"), r.s("b")], r.s("F"))("v")
    assert (do.p("a") | do.p("b"))().get(timeout=60) == r.chain(r.s("a"), r.s("b"))()

    for bad, message in ((lambda: do.apply_async(args="x"), "args='x' is not a list or tuple"),
                         (lambda: do.apply_async(("x",), priority=3), "apply_async does not take priority"),
                         (lambda: client_api.parallel([do.p(1)]).apply_async(countdown=-1), "countdown=-1 is not"),
                         (lambda: client_api.pipeline([do.p(1)])(do.p(2)), r"to run a step first")):
        with pytest.raises(ElasticCodeError, match=message) as caught:
            bad()
        assert "\n" not in str(caught.value)


def test_results_come_back_as_frames(agent_network):
    stats, do = client_api.Socket(name=STATS), client_api.Socket(name=DS)
    sizes, seeds = (2, 3), (0, 1)
    run = client_api.parallel([stats.p(size, seed) for size in sizes for seed in seeds] + [do.p("x" * 70_000)]).delay()
    frame = run.results_frame(timeout=240)  # the first call of `frames` may build its venv

    assert len(frame) == len(sizes) * len(seeds) + 1 and set(frame["socket"]) == {STATS, DS}  # no combinator row
    assert (frame["state"] == "finished").all() and frame["duration"].notna().all()
    measured = frame[frame["socket"] == STATS]
    assert sorted(measured["args"]) == [(size, seed) for size in sizes for seed in seeds]
    for (size, seed), result in zip(measured["args"], measured["result"], strict=True):
        pd.testing.assert_frame_equal(result, expected_stats(size, seed))
    assert frame[frame["socket"] == DS]["result"].iloc[0] == ds("x" * 70_000)  # the client's own copy
    tidy = pd.concat(list(measured["result"]), ignore_index=True)
    means = tidy.groupby("size")["value"].mean()
    expected = pd.concat([expected_stats(s, d) for s in sizes for d in seeds]).groupby("size")["value"].mean()
    pd.testing.assert_series_equal(means, expected)

    calls = elasticcode.history(root=run.id, results=True)
    assert len(calls) == len(frame) and "parallel" not in set(calls["name"])
    assert len(elasticcode.history(root=run.id, combinators=True)) == len(frame) + 1
    stored = calls.set_index("id")["result"]
    for call_id, (size, seed) in zip(measured["id"], measured["args"], strict=True):
        pd.testing.assert_frame_equal(stored[call_id], expected_stats(size, seed))
    big_id = frame[frame["socket"] == DS]["id"].iloc[0]
    assert stored[big_id] is pd.NA  # over 64 KB: not in the call record, not loaded unless asked
    everything = elasticcode.history(root=run.id, results="all").set_index("id")["result"]
    assert everything[big_id] == ds("x" * 70_000)
    assert "result" not in elasticcode.history(root=run.id).columns


LONG = "ledger.operations.accounting.reconciliation.shout_a_very_long_socket_name"


def _flow_env(db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTICCODE_")}
    return {**env, "ELASTICCODE_DB": db_url, **extra}


def test_listings_in_pipes_keep_full_values(flow, db_url, home):
    with get_engine(db_url).begin() as conn:
        conn.execute(text("INSERT INTO call (id, name, state, created, started, finished, duration, error) VALUES "
                          "(gen_random_uuid(), :n, 'finished', now(), now(), now(), 0.5, NULL), "
                          "(gen_random_uuid(), 'short', 'failed', now(), now(), now(), 0.25, :e)"),
                     {"n": LONG, "e": "ValueError: two\nlines"})
    env = _flow_env(db_url, COLUMNS="40", ELASTICCODE_HOME=str(home))
    piped = subprocess.run(" ".join(FLOW) + f" ls calls | grep {LONG}", shell=True, env=env, capture_output=True,
                           text=True, timeout=60)
    assert piped.returncode == 0 and len(piped.stdout.splitlines()) == 1, piped  # one record, one line
    assert re.match(rf"{UUID}\s+{LONG}\s+finished\s", piped.stdout), piped.stdout

    lines = flow("ls", "calls").out.splitlines()  # not a terminal here either
    assert lines[0].split() == ["ID", "NAME", "STATE", "OWNER", "STARTED", "FINISHED", "DURATION"]
    assert len(lines) == 3 and all(len(line.split()) == 7 for line in lines), lines

    read = subprocess.run(" ".join(FLOW) + " ls calls --csv | " + sys.executable
                          + ' -c "import pandas,sys; print(pandas.read_csv(sys.stdin).to_json(orient=\'records\'))"',
                          shell=True, env=env, capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read
    records = pd.read_json(io.StringIO(read.stdout))
    assert sorted(records["name"]) == sorted([LONG, "short"]) and set(records["state"]) == {"finished", "failed"}
    assert set(records.columns) == set(CALL_SUMMARY)  # CSV carries every field of the listing
    assert flow("ls", "calls", "--csv", "--json").code == 2

    # In a terminal: a table as wide as COLUMNS.
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([*FLOW, "ls", "calls"], env=env, stdout=follower, stderr=subprocess.PIPE, timeout=60)
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    table = [line for line in re.sub(rb"\x1b\[[0-9;]*m", b"", out).decode().splitlines() if line.strip()]
    assert table and max(len(line) for line in table) <= 40, table


def test_task_run_to_a_waiting_socket_says_why_and_the_call_id(services, flow, db_url, sample_repo):
    for args in (("add", "queue", "-n", "q"),
                 ("add", "processor", "-n", "asleep", "-g", str(sample_repo), "-m", "pyfi.processors.sample"),
                 ("add", "socket", "-n", "asleep.do_this", "-q", "q", "-pn", "asleep", "-t", "do_this")):
        assert flow(*args).code == 0
    with get_engine(db_url).begin() as conn:  # as an agent records a stopped processor
        conn.execute(text("UPDATE processor SET status = 'stopped' WHERE name = 'asleep'"))
    started = time.monotonic()
    waited = flow("task", "run", "-s", "asleep.do_this", "-d", "1")
    elapsed = time.monotonic() - started
    from elasticcode.cli.task import WAITING_TIMEOUT

    assert waited.code == 1 and WAITING_TIMEOUT <= elapsed < WAITING_TIMEOUT + 10, (elapsed, waited)
    last = waited.err.strip().splitlines()[-1]
    assert re.search(rf"call {UUID} to asleep.do_this has no result after {WAITING_TIMEOUT:g}s and stays queued: "
                     r"processor asleep is stopped", last), waited.err
    assert "Traceback" not in waited.err

    Dispatcher.forget_all()  # a new client: it warns once per socket
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handle = client_api.Socket(name="asleep.do_this").delay("x")
    said = [str(w.message) for w in caught if issubclass(w.category, WaitingWarning)]
    assert said == [f"asleep.do_this: call {handle.id} is queued: processor asleep is stopped; the call waits in its "
                    "queue until the processor runs"]
