"""`elasticcode.Executor`: concurrent.futures on the network, with a real agent and worker."""

from __future__ import annotations

import threading
from concurrent import futures

import pytest
from runtime_helpers import make_repo, wait_until

import elasticcode
from elasticcode.client.executor import CallFuture

pytestmark = pytest.mark.timeout(240)

CODE = '''
import time


def ident(x):
    return x


def nap(x, seconds=0.0):
    time.sleep(seconds)
    return x


def boom(x):
    raise ValueError("boom " + str(x))
'''


@pytest.fixture
def network(flow, agent, tmp_path):
    repo = make_repo(tmp_path / "repo", CODE, "exmod/funcs.py")
    for args in (("add", "queue", "-n", "exq"),
                 ("add", "processor", "-n", "exproc", "-g", repo.working_tree_dir, "-m", "exmod.funcs", "-h", "localhost",
                  "-c", "2"),
                 *(("add", "socket", "-n", name, "-q", "exq", "-pn", "exproc", "-t", name) for name in ("ident", "nap", "boom"))):
        result = flow(*args)
        assert result.code == 0, result
    return agent


def test_futures_as_completed_map_errors_cancel_and_shutdown(network):
    ex = elasticcode.Executor()
    warm = ex.submit("ident", "warm")
    assert isinstance(warm, futures.Future) and isinstance(warm, CallFuture)
    assert warm.result(timeout=150) == "warm", network.output()[-3000:]

    # as_completed over 100 calls, filled by one watcher thread (not one thread per call)
    threads = threading.active_count()
    ident = elasticcode.Socket(name="ident")
    submitted = [ex.submit(ident, i) for i in range(100)]
    seen, peak = [], threading.active_count()
    for future in futures.as_completed(submitted, timeout=120):
        seen.append(future.result())
        peak = max(peak, threading.active_count())
    assert sorted(seen) == list(range(100))
    assert peak <= threads + 1, (threads, peak)
    assert len({f.call_id for f in submitted}) == 100

    # map keeps the order of its inputs, whatever order the calls finish in
    assert list(ex.map("nap", [4, 3, 2, 1, 0], [0.4, 0.3, 0.2, 0.1, 0.0], timeout=60)) == [4, 3, 2, 1, 0]
    assert list(ex.map(ident, range(30), chunksize=5)) == list(range(30))

    # the socket's own exception, through result(), exception() and map
    failing = ex.submit("boom", 7)
    error = failing.exception(timeout=60)
    assert isinstance(error, ValueError) and str(error) == "boom 7", repr(error)
    with pytest.raises(ValueError, match="boom 8"):
        list(ex.map("boom", [8]))
    done, not_done = futures.wait([ex.submit("ident", i) for i in range(5)] + [ex.submit("boom", 9)], timeout=60)
    assert len(done) == 6 and not not_done
    assert sorted(f.result() for f in done if f.exception() is None) == [0, 1, 2, 3, 4]

    # cancel: a started call cannot be cancelled, a queued one can (and is never waited for)
    sleepers = [ex.submit("nap", i, 1.5) for i in range(4)]
    wait_until(lambda: ex._started(sleepers[0].call_id), 30, what="the first sleeper to start")
    assert sleepers[0].cancel() is False and sleepers[0].running()
    assert sleepers[3].cancel() is True and sleepers[3].cancelled()
    finished, _ = futures.wait(sleepers, timeout=60)
    assert len(finished) == 4 and [f.result() for f in sleepers[:3]] == [0, 1, 2]

    ex.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit("ident", 1)

    # every call is recorded like any other: warm-up, 100, map of 30, wait of 5
    def recorded():
        frame = elasticcode.history(socket="ident")
        return [frame] if len(frame) == 136 and (frame["state"] == "finished").all() else None

    frame = wait_until(recorded, 30, what="136 recorded ident calls")[0]
    assert set(f.call_id for f in submitted) <= set(frame["id"])


def test_context_manager_waits_and_a_bad_target_is_one_clear_error(network):
    from elasticcode.errors import ElasticCodeError

    with elasticcode.Executor() as ex:
        with pytest.raises(ElasticCodeError, match="not a socket"):
            ex.submit(print, 1)
        results = [ex.submit("nap", i, 0.2) for i in range(4)]
    assert all(f.done() for f in results)  # shutdown(wait=True) on leaving the block
    assert [f.result() for f in results] == [0, 1, 2, 3]
    with pytest.raises(RuntimeError):
        ex.submit("ident", 0)
