"""The raw Celery apps, imported by the benchmark's client and by its workers (`celery -A bench.systems.celery_app`).

BENCH_CELERY_SETTINGS picks the line: `durable` is a plain Celery app with the durable settings a
careful user would set (acks late, reject on worker lost, prefetch 1, JSON only); `elasticcode` is
ElasticCode's own app factory with every setting it uses (elasticcode.runtime.app.make_app).
"""

from __future__ import annotations

import os

import benchfuncs
from celery import Celery

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
