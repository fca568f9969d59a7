"""The Celery app factory: every setting that closes a known way Celery loses or repeats work."""

from __future__ import annotations

from urllib.parse import urlsplit

from celery import Celery

from . import codec

VISIBILITY_TIMEOUT = 3600  # seconds; longer than any call should run, or Redis redelivers it early
DEFAULT_QUEUE = "elasticcode.default"


def is_redis(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme in ("redis", "rediss", "redis+socket", "socket", "unix")


def make_app(broker: str, backend: str | None = None, name: str = "elasticcode",
             visibility_timeout: int = VISIBILITY_TIMEOUT) -> Celery:
    codec.install()
    app = Celery(name, broker=broker, backend=backend or None, set_as_current=False)
    transport = {"visibility_timeout": visibility_timeout}
    if urlsplit(broker).scheme in ("amqp", "pyamqp", "amqps"):
        transport["confirm_publish"] = True  # a publish returns only once RabbitMQ has the message
    app.conf.update(
        # JSON only: pickle is never accepted, in either direction.
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Ack after the call finished; a killed pool child puts its message back.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # The Redis visibility timeout must agree in all three places (celery/celery#4400).
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": visibility_timeout},
        visibility_timeout=visibility_timeout,
        # A lost broker connection means the running calls can never be acked on their channel:
        # Celery cancels them (no duplicate run later) and the worker puts their messages back
        # once it is connected again (runtime/inflight.py), instead of after the visibility timeout.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # The result backend may be away (a Redis restart): wait for it rather than lose the
        # result, or the cancelled call's retry mark, and with it the call.
        result_backend_always_retry=True,
        result_backend_max_retries=40,
        result_backend_max_sleep_between_retries_ms=5000,
        broker_connection_retry_on_startup=True,
        # Celery's own monitoring events, the STARTED state and extended results are off: every
        # call's provenance is already in our event stream (`events.py`), and these cost about a
        # third of a call's round trip (one more broker publish per call, one more backend write
        # per call). Flower still works: it turns the workers' events on with Celery's remote
        # control (`enable_events`) when it starts; `celery -A ... control enable_events` does too.
        task_send_sent_event=False,
        worker_send_task_events=False,
        result_extended=False,
        task_track_started=False,
        task_default_queue=DEFAULT_QUEUE,
        task_create_missing_queues=True,
        task_default_delivery_mode="persistent",
        result_expires=7 * 24 * 3600,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_connection_timeout=5,
        redis_socket_connect_timeout=5,
    )
    return app
