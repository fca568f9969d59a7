"""The Celery app factory: every setting that closes a known way Celery loses or repeats work."""

from __future__ import annotations

import ssl
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from celery import Celery
from celery.app import backends

from . import codec
from .kombu_clients import reuse_sync_clients
from .results import sealed_backend_class

VISIBILITY_TIMEOUT = 3600  # seconds; longer than any call should run, or Redis redelivers it early
DEFAULT_QUEUE = "elasticcode.default"


def is_redis(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme in ("redis", "rediss", "redis+socket", "socket", "unix")


class ElasticCodeCelery(Celery):
    """Celery, with results sealed for the user of each call in a Redis backend (`results.py`)."""

    def _get_backend(self):
        backend_cls, url = backends.by_url(self.backend_cls or self.conf.result_backend, self.loader)
        return sealed_backend_class(backend_cls)(app=self, url=url)


# TLS options in an amqps:// URL, named as in rediss:// URLs (redis-py's), and py-amqp's names for them.
_AMQPS_OPTIONS = {"ssl_ca_certs": "ca_certs", "ssl_certfile": "certfile", "ssl_keyfile": "keyfile",
                  "ssl_cert_reqs": "cert_reqs"}
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


def amqps_options(broker: str) -> tuple[str, dict | None]:
    """An amqps:// URL without its TLS options, and the options for Celery's `broker_use_ssl`.

    kombu reads no TLS options from an AMQP URL (only from `broker_use_ssl`), so one URL could not
    name a private CA; this takes `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` and `ssl_cert_reqs`
    from it, as rediss:// URLs do. Without them the server is verified against the system's CAs."""
    parts = urlsplit(broker)
    if parts.scheme != "amqps":
        return broker, None
    query = parse_qsl(parts.query, keep_blank_values=True)
    options: dict = {_AMQPS_OPTIONS[k]: v for k, v in query if k in _AMQPS_OPTIONS}
    if not options:
        return broker, None
    reqs = str(options.get("cert_reqs", "required")).lower().removeprefix("cert_")
    if reqs not in _CERT_REQS:
        raise ValueError(f"ssl_cert_reqs={options['cert_reqs']!r} in the broker URL: use required, optional or none")
    options["cert_reqs"] = _CERT_REQS[reqs]
    rest = urlencode([(k, v) for k, v in query if k not in _AMQPS_OPTIONS])
    return urlunsplit(parts._replace(query=rest)), options


def make_app(broker: str, backend: str | None = None, name: str = "elasticcode",
             visibility_timeout: int = VISIBILITY_TIMEOUT) -> Celery:
    codec.install()
    broker, broker_ssl = amqps_options(broker)
    if is_redis(broker):
        reuse_sync_clients()
    app = ElasticCodeCelery(name, broker=broker, backend=backend or None, set_as_current=False)
    transport = {"visibility_timeout": visibility_timeout}
    if urlsplit(broker).scheme in ("amqp", "pyamqp", "amqps"):
        transport["confirm_publish"] = True  # a publish returns only once RabbitMQ has the message
    if broker_ssl:
        app.conf.broker_use_ssl = broker_ssl
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
