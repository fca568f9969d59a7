"""The recorder builds live messages only for channels someone reads (kernel_agent/recorder.py).

Readers of every processor's channel (a pattern subscription: the notebook graph, the API
server's feeds) announce themselves by subscribing to `naming.LIVE_READERS_CHANNEL`; a reader of
one processor (`flow listen`) is seen by its own channel's subscriber count. Real Redis, real
readers: the graph's `LiveStates` and a plain pub/sub subscription.
"""

from __future__ import annotations

import threading
import uuid

from runtime_helpers import wait_until

from elasticcode.runtime import naming
from elasticcode.runtime.connections import redis_client
from elasticcode.runtime.events import LIVE_CHANNEL
from jupyter_ext.live import LiveStates
from kernel_agent.recorder import Recorder


def _channels(n: int) -> set[str]:
    tag = uuid.uuid4().hex[:8]
    return {naming.channel(f"p{i}-{tag}", LIVE_CHANNEL) for i in range(n)}


def test_live_messages_go_only_to_channels_someone_reads(redis_base):
    client = redis_client(redis_base)
    recorder = Recorder("postgresql://unused", client, threading.Event())
    one, other = sorted(_channels(2))
    readers = dict(client.pubsub_numsub(naming.LIVE_READERS_CHANNEL))[naming.LIVE_READERS_CHANNEL.encode()]
    assert readers == 0, "a reader of every channel is still subscribed from an earlier test"
    assert recorder.listened({one, other}) == set()

    listener = client.pubsub()  # what `flow listen -n PROCESSOR -c task` does
    listener.subscribe(one)
    wait_until(lambda: recorder.listened({one, other}) == {one}, 5, 0.02, what="the subscriber to count")

    graph = LiveStates(redis_base, lambda changed: None).start()  # a pattern reader of every processor
    try:
        wait_until(lambda: recorder.listened({one, other}) == {one, other}, 10, 0.02, what="the graph's reader to count")
    finally:
        assert graph.stop()
    wait_until(lambda: recorder.listened({one, other}) == {one}, 10, 0.02, what="the graph's reader to leave")
    listener.close()
    wait_until(lambda: recorder.listened({one, other}) == set(), 10, 0.02, what="the subscriber to leave")
