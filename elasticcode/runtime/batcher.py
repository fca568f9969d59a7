"""Work handed to a background thread and flushed in batches, so the caller never waits for Redis.

The worker's main process uses it for what it records about each message it takes (the
`received` event, the in-flight log): its event loop must keep dispatching messages. A batch
that could not reach Redis is kept and tried again once Redis answers, ahead of newer items.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import redis

Item = TypeVar("Item")


class Batcher(Generic[Item]):
    def __init__(self, flush: Callable[[list[Item]], None], name: str, max_batch: int = 500,
                 idle: Callable[[], None] | None = None, idle_every: float = 60.0):
        self.flush, self.max_batch = flush, max_batch
        self.idle, self.idle_every = idle, idle_every
        self.queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.pending = 0  # items put and not yet flushed
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._drain, name=name, daemon=True)
        self.thread.start()

    def put(self, item: Item) -> None:
        with self._lock:
            self.pending += 1
        self.queue.put(item)

    def wait_flushed(self, timeout: float) -> bool:
        """Wait until everything put so far reached Redis (or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.pending

    def _drain(self) -> None:
        next_idle = time.monotonic() + self.idle_every
        batch: list[Item] = []
        while True:
            if not batch:
                try:
                    batch = [self.queue.get(timeout=self.idle_every if self.idle else None)]
                except queue.Empty:
                    pass
            while batch and len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get())
            try:
                if batch:
                    self.flush(batch)
                    with self._lock:
                        self.pending -= len(batch)
                    batch = []
                if self.idle and time.monotonic() >= next_idle:
                    next_idle = time.monotonic() + self.idle_every
                    self.idle()
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                time.sleep(1)  # Redis is away: keep the batch and try again
            except redis.RedisError:
                with self._lock:  # refused, not away: trying again would loop forever
                    self.pending -= len(batch)
                batch = []
