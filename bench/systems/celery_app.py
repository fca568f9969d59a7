"""The raw Celery apps, imported by the benchmark's client and by its workers (`celery -A bench.systems.celery_app`).

P4's hop in raw Celery is what a careful user would write for a plug: the source task's
`on_success` sends the next task with the source's result (here the time it finished, read at the
same point as ElasticCode's `finished`), and the next task returns how long after that it started.

BENCH_CELERY_SETTINGS picks the line: `durable` is a plain Celery app with the durable settings a
careful user would set (acks late, reject on worker lost, prefetch 1, JSON only); `elasticcode` is
ElasticCode's own app factory with every setting it uses (elasticcode.runtime.app.make_app).
"""

from __future__ import annotations

import os
import time

import benchfuncs
from celery import Celery, Task

BROKER = os.environ["BENCH_BROKER"]
SETTINGS = os.environ.get("BENCH_CELERY_SETTINGS", "durable")

if SETTINGS == "elasticcode":
    from elasticcode.runtime.app import make_app

    app = make_app(BROKER, BROKER, name="bench-celery-ec")
else:
    app = Celery("bench-celery", broker=BROKER, backend=BROKER, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
    )

ECHO = f"{SETTINGS}.echo"
SPIN = f"{SETTINGS}.spin"
app.task(name=ECHO, acks_late=True, reject_on_worker_lost=True)(benchfuncs.echo)
app.task(name=SPIN, acks_late=True, reject_on_worker_lost=True)(benchfuncs.spin)
HOP_SOURCE = f"{SETTINGS}.hop_source"
HOP_TARGET = f"{SETTINGS}.hop_target"


def hop_id(source_id: str) -> str:
    """The id of the call a hop source sends on (so the client can wait for it)."""
    return f"{source_id}.hop"


class HopSource(Task):
    """Sends its result on from `on_success`, as Celery runs it: after the result is stored."""

    def on_success(self, retval, task_id, args, kwargs):
        finished = time.time()
        self.app.send_task(HOP_TARGET, args=[finished], queue=retval, task_id=hop_id(task_id))


@app.task(name=HOP_SOURCE, base=HopSource, acks_late=True, reject_on_worker_lost=True)
def hop_source(queue):
    """Returns the queue its result is sent on to (see HopSource)."""
    return queue


@app.task(name=HOP_TARGET, acks_late=True, reject_on_worker_lost=True)
def hop_target(finished):
    return time.time() - finished
