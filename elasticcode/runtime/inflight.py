"""The in-flight log: which messages a worker process took and has not acknowledged yet.

With a Redis broker, a message taken with late acks waits in kombu's `unacked` hash until it is
acknowledged; if the process that took it can no longer acknowledge it, Redis gives it back
only after the visibility timeout (an hour). That happens twice: the whole worker dies (the
agent that sees it die restores its messages, `kernel_agent/redelivery.py`), or the worker
loses its broker connection (Celery cancels the calls it was running, since their channel is
gone: `worker_cancel_long_running_tasks_on_connection_loss`; the worker restores them itself as
soon as it is connected again, `RestoreAfterReconnect`). Each worker process logs the delivery
tags it takes under its own key; entries whose message was acknowledged are pruned now and then.
Restoring uses kombu's own `restore_by_tag`: atomically out of the unacked hash and back at the
head of the message's queue, marked redelivered.
"""

from __future__ import annotations

from typing import Any

import redis
from celery import bootsteps

from . import naming
from .batcher import Batcher
from .events import CallEvent, stream_fields


class TakenLog:
    """What the worker's main process records about each message it takes, off its event loop and
    in one batched round trip: the `received` event (the call-event stream) and, with a Redis
    broker, the delivery tag (the in-flight log, in the broker's Redis). When both are one Redis,
    as on the embedded stack, they share one pipeline."""

    def __init__(self, events: redis.Redis, broker: redis.Redis | None, worker: str, pid: int, same_redis: bool):
        self.events, self.client, self.same = events, broker, same_redis and broker is not None
        self.key = naming.inflight_key(worker, pid)
        self.batcher: Batcher[tuple[CallEvent, str | None]] = Batcher(
            self._flush, "ec-taken", idle=self.prune if broker is not None else None)

    def took(self, received: CallEvent, delivery_tag: str | None) -> None:
        self.batcher.put((received, delivery_tag if self.client is not None else None))

    def _flush(self, batch: list[tuple[CallEvent, str | None]]) -> None:
        pipe = self.events.pipeline(transaction=False)
        for event, _ in batch:
            pipe.xadd(naming.EVENTS_STREAM, stream_fields(event))
        tags = {tag: event.call for event, tag in batch if tag}
        if tags and self.client is not None:
            target = pipe if self.same else self.client.pipeline(transaction=False)
            target.hset(self.key, mapping=tags)
            target.expire(self.key, naming.INFLIGHT_TTL_SECONDS)
            if target is not pipe:
                target.execute()  # the tags first: a lost event is superseded by prerun, a lost tag is not
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


def guard_unacked_append() -> None:
    """Wrap kombu's Redis `QoS.append` so that a message it failed to record is not lost."""
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.QoS.append
    if getattr(original, "ec_guarded", False):
        return

    def append(self: Any, message: Any, delivery_tag: str) -> None:
        try:
            original(self, message, delivery_tag)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            info = message.delivery_info
            _UNRECORDED.append((delivery_tag, message._raw, info["exchange"], info["routing_key"]))
            raise

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
