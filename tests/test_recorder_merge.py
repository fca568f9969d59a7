"""A call run twice, its runs' events reaching PostgreSQL in separate batches in every order: the row
is the latest delivery's (worker, host, start, end), with the first receipt and the queued time.

This is what a node dying mid-call gives (README, Reliability; `tests/test_cluster.py`): the call
runs again on another node, and the dead node's recorder had read the first run's received and
prerun events without writing them; another recorder claims and writes them later, in a batch of
its own, possibly between the second run's start and its end. `tests/test_fold.py` covers the
events of one batch; this covers the SQL merge between batches (`kernel_agent/recorder.py`).
Real PostgreSQL (as the agent's service role) and Redis, a real recorder thread.
"""

from __future__ import annotations

import itertools
import threading
import uuid

import psycopg2
from runtime_helpers import wait_until
from test_security import libpq

from elasticcode.client.settings import default_dispatcher
from elasticcode.runtime import naming
from elasticcode.runtime.connections import redis_client
from elasticcode.runtime.events import POSTRUN, PRERUN, QUEUED, RECEIVED, CallEvent, stream_fields
from kernel_agent import recorder

T0 = 1_700_000_000.0


def _runs(call: str, socket: str, user: str) -> dict[str, list[CallEvent]]:
    """The batches one call's events can come in: the first run, on node1, which never ended (its
    node died); the second run's start on node2 (delivery 2, seconds later), and its end."""
    common = dict(socket=socket, processor="p", user=user)
    node1, node2 = dict(worker="p@node1", host="node1"), dict(worker="p@node2", host="node2")
    return {
        "first run": [CallEvent(call, RECEIVED, T0 + 1.0, **node1, **common),
                      CallEvent(call, PRERUN, T0 + 1.1, **node1, **common)],
        "second start": [CallEvent(call, RECEIVED, T0 + 9.0, **node2, **common),
                         CallEvent(call, PRERUN, T0 + 9.1, **node2, **common)],
        # What a worker sends: the closing event carries its run's start and delivery count.
        "second end": [CallEvent(call, POSTRUN, T0 + 9.3, started=T0 + 9.1, duration=0.2, deliveries=2, result="1",
                                 **node2, **common)],
    }


def _push(client, events: list[CallEvent]) -> None:
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(naming.EVENTS_STREAM, stream_fields(event))
    pipe.execute()


def test_a_call_run_twice_is_its_latest_run_whatever_the_order_of_the_batches(services, db_url, service_url):
    dispatcher = default_dispatcher()
    dispatcher.sign_calls()
    client = redis_client(services["ELASTICCODE_BROKER"])
    socket = f"merge.{uuid.uuid4().hex[:6]}"
    orders = list(itertools.permutations(("first run", "second start", "second end")))
    calls = {str(uuid.uuid4()): order for order in orders}
    stop = threading.Event()
    step = recorder.RecorderStep(service_url, client, stop, node=f"t-{uuid.uuid4().hex[:6]}", threads=1)
    step.start()
    try:
        _push(client, [CallEvent(call, QUEUED, T0, socket=socket, processor="p", user=dispatcher.user) for call in calls])
        wait_until(lambda: client.xlen(naming.EVENTS_STREAM) == 0, 30, what="the queued events written")
        for position in range(3):  # every call's next batch, each round written before the next is sent
            _push(client, [e for call, order in calls.items() for e in _runs(call, socket, dispatcher.user)[order[position]]])
            wait_until(lambda: client.xlen(naming.EVENTS_STREAM) == 0, 30, what=f"batch {position + 1} written")
        assert step.recorder.refused == step.recorder.rejected == 0
    finally:
        stop.set()
        step.close()

    with psycopg2.connect(libpq(db_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT id::text, state, worker, host, deliveries, extract(epoch FROM created), "
                    "extract(epoch FROM received), extract(epoch FROM started), extract(epoch FROM finished) "
                    "FROM call WHERE name = %s", (socket,))
        rows = {row[0]: row[1:] for row in cur.fetchall()}
    assert len(rows) == len(orders) == 6
    expected = ("finished", "p@node2", "node2", 2, T0, T0 + 1.0, T0 + 9.1, T0 + 9.3)
    wrong = {" -> ".join(calls[call]): row for call, row in rows.items()
             if row[:4] != expected[:4] or [round(float(t), 3) for t in row[4:]] != list(expected[4:])}
    assert not wrong, f"expected {expected}, got {wrong}"
