"""An agent's two recorder threads (kernel_agent/recorder.py): on a trickle of events only the first
reads, so batches stay as large as with one; on a backlog (full batches) the second joins in; either
way every event is written exactly once. Real PostgreSQL (as the agent's service role) and Redis."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg2
from runtime_helpers import wait_until
from test_security import libpq

from elasticcode.client.settings import default_dispatcher
from elasticcode.runtime import naming
from elasticcode.runtime.connections import redis_client
from elasticcode.runtime.events import POSTRUN, PRERUN, QUEUED, RECEIVED, CallEvent, stream_fields
from kernel_agent import recorder

EVENTS = (QUEUED, RECEIVED, PRERUN, POSTRUN)  # what one call writes


def _calls(name: str, user: str, count: int) -> list[list[dict]]:
    """Each call's signed stream entries."""
    out = []
    for _ in range(count):
        call = str(uuid.uuid4())
        out.append([stream_fields(CallEvent.now(call, event, socket=name, processor="p", user=user,
                                                **({"result": "1"} if event == POSTRUN else {})))
                    for event in EVENTS])
    return out


def _recorded(db_url: str, name: str) -> tuple[int, int, int]:
    """Finished calls of `name`, their event rows, and distinct event rows."""
    with psycopg2.connect(libpq(db_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM call WHERE name = %s AND state = 'finished'", (name,))
        calls = cur.fetchone()[0]
        cur.execute("SELECT count(*), count(DISTINCT (e.call_id, e.name)) FROM event e JOIN call c ON c.id = e.call_id "
                    "WHERE c.name = %s", (name,))
        return (calls, *cur.fetchone())


def test_the_second_recorder_thread_helps_only_with_a_backlog(services, db_url, service_url):
    dispatcher = default_dispatcher()
    dispatcher.sign_calls()
    client = redis_client(services["ELASTICCODE_BROKER"])
    stop = threading.Event()
    step = recorder.RecorderStep(service_url, client, stop, node=f"t-{uuid.uuid4().hex[:6]}")
    first, second = step.recorders
    step.start()
    try:
        # A trickle: one call every 0.1 s, written by the first thread alone.
        trickle = f"trickle.{uuid.uuid4().hex[:6]}"
        for entries in _calls(trickle, dispatcher.user, 10):
            for fields in entries:
                client.xadd(naming.EVENTS_STREAM, fields)
            time.sleep(0.1)
        wait_until(lambda: _recorded(db_url, trickle)[0] == 10, 30, what="the trickle's 10 calls recorded")
        assert second.written == 0 and first.written == 40

        # A backlog: 1,500 calls (6,000 events, three full batches) pushed at once.
        backlog = f"backlog.{uuid.uuid4().hex[:6]}"
        pipe = client.pipeline(transaction=False)
        for entries in _calls(backlog, dispatcher.user, 1500):
            for fields in entries:
                pipe.xadd(naming.EVENTS_STREAM, fields)
        pipe.execute()
        wait_until(lambda: client.xlen(naming.EVENTS_STREAM) == 0, 120, what="the backlog written")
        assert _recorded(db_url, backlog) == (1500, 6000, 6000)
        assert second.written > 0, "the second thread never helped with a backlog of three batches"
        assert first.written + second.written == 40 + 6000  # every event written once
        assert first.refused == second.refused == 0
    finally:
        stop.set()
        step.close()
