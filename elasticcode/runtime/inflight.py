"""The in-flight log: which messages a worker process took and has not acknowledged yet.

With a Redis broker, a message taken with late acks waits in kombu's `unacked` hash until it is
acknowledged; if the process that took it can no longer acknowledge it, Redis gives it back
only after the visibility timeout (an hour). That happens twice: the whole worker dies (the
agent that sees it die restores its messages, `kernel_agent/redelivery.py`), or the worker
loses its broker connection (Celery cancels the calls it was running, since their channel is
gone: `worker_cancel_long_running_tasks_on_connection_loss`; the worker restores them itself as
soon as it is connected again, `RestoreAfterReconnect`). Each worker process logs the delivery
tags it takes under its own key, in the same MULTI/EXEC as kombu's own unacked entry
(`guard_unacked_append`), so no message is ever held unacknowledged without its process's log
naming it; entries whose message was acknowledged are pruned now and then.
Restoring uses kombu's own `restore_by_tag`: atomically out of the unacked hash and back at the
head of the message's queue, marked redelivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from celery import bootsteps

from . import naming
from .batcher import Batcher
from .events import CallEvent, stream_fields


class TakenLog:
    """What the worker's main process records about each message it takes, off its event loop and
    in one batched round trip: the `received` event (the call-event stream), when the events are
    not on the broker's Redis (else `guard_unacked_append` writes it). The delivery tags
    themselves are logged under `key` by `guard_unacked_append`, atomically with kombu's unacked
    entry; this prunes them."""

    def __init__(self, events: redis.Redis, broker: redis.Redis | None, worker: str, pid: int):
        self.events, self.client = events, broker
        self.key = naming.inflight_key(worker, pid)
        self.batcher: Batcher[CallEvent] = Batcher(self._flush, "ec-taken",
                                                   idle=self.prune if broker is not None else None)

    def took(self, received: CallEvent) -> None:
        self.batcher.put(received)

    def _flush(self, batch: list[CallEvent]) -> None:
        pipe = self.events.pipeline(transaction=False)
        for event in batch:
            pipe.xadd(naming.EVENTS_STREAM, stream_fields(event))
        pipe.execute()

    def prune(self) -> None:
        """Forget the tags that kombu no longer holds (acknowledged), so the log stays small."""
        tags = self.client.hkeys(self.key)
        if not tags:
            return
        pipe = self.client.pipeline(transaction=False)
        for tag in tags:
            pipe.hexists(naming.KOMBU_UNACKED_KEY, tag)
        done = [tag for tag, held in zip(tags, pipe.execute(), strict=True) if not held]
        if done:
            self.client.hdel(self.key, *done)


def restore(client: redis.Redis, qos: Any, key: str, keep: set[str] = frozenset()) -> list[str]:
    """Requeue the messages logged under `key` that kombu still holds unacknowledged, except the
    calls in `keep` (still running here); returns the call ids put back."""
    restored = []
    for tag, call in client.hgetall(key).items():
        if call.decode() in keep:
            continue
        if client.hexists(naming.KOMBU_UNACKED_KEY, tag):
            qos.restore_by_tag(tag.decode())
            restored.append(call.decode())
        client.hdel(key, tag)  # put back or acknowledged: no longer this process's either way
    return restored


# Messages popped off a queue whose entry in kombu's unacked hash could not be written (the
# connection broke between the two: kombu's BRPOP and its unacked write are not one atomic
# step). Nothing in Redis holds them any more; this process puts them back after reconnecting.
_UNRECORDED: list[tuple[str, dict, str, str]] = []  # (delivery tag, raw message, exchange, routing key)


def guard_unacked_append(inflight_key: str, received: Callable[[Any], dict[str, str] | None] | None = None) -> None:
    """Replace kombu's Redis `QoS.append` (which records a taken message in its unacked hash and
    index) with one that also logs the delivery tag under `inflight_key` in the same MULTI/EXEC,
    and keeps a message it failed to record so that it is not lost.

    With `received` (when the call-event stream is on the broker's own Redis), the message's
    `received` event (its stream fields, or None to record none) goes in that MULTI/EXEC too:
    no round trip and no thread of its own, and never recorded without the message being held."""
    from kombu.transport import redis as kombu_redis
    from kombu.transport import virtual
    from kombu.utils.json import dumps

    if getattr(kombu_redis.QoS.append, "ec_guarded", False):
        return

    def append(self: Any, message: Any, delivery_tag: str) -> None:
        info = message.delivery_info
        call = str((message.headers or {}).get("id") or delivery_tag)
        event = received(message) if received is not None else None
        try:
            with self.pipe_or_acquire() as pipe:  # a transaction (MULTI/EXEC): all of it or none
                pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()})
                pipe.hset(self.unacked_key, delivery_tag, dumps([message._raw, info["exchange"], info["routing_key"]]))
                pipe.hset(inflight_key, delivery_tag, call)
                pipe.expire(inflight_key, naming.INFLIGHT_TTL_SECONDS)
                if event is not None:
                    pipe.xadd(naming.EVENTS_STREAM, event)
                pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            _UNRECORDED.append((delivery_tag, message._raw, info["exchange"], info["routing_key"]))
            raise
        virtual.QoS.append(self, message, delivery_tag)  # what kombu's own append ends with

    append.ec_guarded = True  # type: ignore[attr-defined]
    kombu_redis.QoS.append = append


def restore_unrecorded(channel: Any) -> list[str]:
    """Put back, at the head of their queues, the messages `guard_unacked_append` kept; returns their ids."""
    restored = []
    with channel.conn_or_acquire() as client:
        while _UNRECORDED:
            tag, raw, exchange, routing_key = _UNRECORDED[0]
            if client.hexists(naming.KOMBU_UNACKED_KEY, tag):  # the write did land; only its reply was lost
                channel.qos.restore_by_tag(tag, client=client, leftmost=True)
            else:
                pipe = client.pipeline()
                channel._do_restore_message(raw, exchange, routing_key, pipe, leftmost=True)
                pipe.execute()
            _UNRECORDED.pop(0)
            restored.append(str((raw.get("headers") or {}).get("id", tag)))
    return restored


class RestoreAfterReconnect(bootsteps.StartStopStep):
    """A consumer step: each time the consumer starts again after a lost broker connection, put
    back the messages this process took before (it can never acknowledge them now)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any):
        super().__init__(parent, **kwargs)
        self.starts = 0

    def start(self, c: Any) -> None:
        self.starts += 1
        unrecorded = restore_unrecorded(c.connection.default_channel) if _UNRECORDED else []
        if unrecorded:
            print(f"elasticcode: connection to the broker restored; put back {len(unrecorded)} call(s) taken off "
                  f"their queue as the connection broke: {', '.join(unrecorded)}", flush=True)
        log: TakenLog | None = getattr(c.app, "ec_taken", None)
        if self.starts == 1 or log is None or log.client is None:
            return
        from celery.worker.state import active_requests, reserved_requests

        log.batcher.wait_flushed(10)
        keep = {request.id for request in (*active_requests, *reserved_requests)}
        restored = restore(log.client, c.connection.default_channel.qos, log.key, keep)
        if restored:
            print(f"elasticcode: connection to the broker restored; put back {len(restored)} call(s) this worker "
                  f"could no longer acknowledge: {', '.join(restored)}", flush=True)
