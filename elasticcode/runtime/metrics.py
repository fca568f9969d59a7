"""The metrics contract: the figures every agent publishes once a second, per node and processor.

Each agent's scaling step (`kernel_agent/scaling.py`) already reads, twice a second, every
processor's queue depth and its worker's pool report, and decides each worker's share of the
node's CPUs; once a second it publishes what it saw as one `NodeMetrics` record, in two places
in the coordination Redis (the one of the call events):

- the capped stream `ec:metrics` (XADD MAXLEN ~ METRICS_MAXLEN): every record, in order, for
  readers that follow them (`follow`: the API server's WebSocket);
- the key `ec:metrics:node:<node>` (expires after LATEST_TTL seconds, so a stopped agent's figures
  vanish) with the node's latest record, and the set `ec:metrics:nodes` naming those keys, for
  readers that just arrive (`latest`: `flow top`, a Prometheus scrape).

A record holds everything its readers show, so none of them computes the figures again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import redis

VERSION = 1  # of the record's JSON; readers skip records of a newer version they cannot read
METRICS_STREAM = "ec:metrics"
METRICS_MAXLEN = 3600  # entries kept in the stream (about an hour of one node, approximate trimming)
NODES_KEY = "ec:metrics:nodes"  # set: the nodes that publish
LATEST_TTL = 10  # seconds a node's latest record outlives its agent's last publication
PUBLISH_EVERY = 1.0  # seconds between two records of one node


def latest_key(node: str) -> str:
    """The key holding one node's latest record (JSON)."""
    return f"ec:metrics:node:{node}"


def decision_text(old: int, new: int, reason: str) -> str:
    """A scaling decision as records carry it: `share 1 -> 2: backlog 37`."""
    return f"share {old} -> {new}: {reason}"


@dataclass(frozen=True, slots=True)
class ProcessorMetrics:
    """One processor's worker on one node, as its agent saw it when it published."""

    processor: str  # the processor's name
    processor_id: str
    queue: int  # calls waiting: in its broker queues, or taken by its worker but not running yet
    busy: int  # pool processes running a call
    pool: int  # pool processes (idle = pool - busy)
    min: int  # the processor's minimum of processes (`--min`)
    max: int  # the processor's maximum (`-c`)
    share: int  # the autoscale maximum the agent gives it now: its share of the node's CPUs
    calls_per_s: float  # calls finished on this node in the last interval, per second
    finished: int  # calls finished on this node since its agent started (a counter: Prometheus `rate()`)
    decision: str | None = None  # the last scaling decision, e.g. "share 1 -> 2: backlog 37"
    decided: float | None = None  # when it was made (epoch seconds)

    @property
    def idle(self) -> int:
        return max(0, self.pool - self.busy)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "idle": self.idle}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessorMetrics:
        """From `to_dict`'s output; unknown keys (`idle`, fields of a later version) are ignored."""
        return cls(**{name: data.get(name) for name in _PROCESSOR_FIELDS if name in data})


_PROCESSOR_FIELDS = tuple(f.name for f in fields(ProcessorMetrics))


@dataclass(frozen=True, slots=True)
class NodeMetrics:
    """One node's figures at one moment: what its agent publishes once a second."""

    node: str  # the node's name (the agent's hostname)
    cpus: int  # the node's CPUs: the budget of busy pool processes
    ts: float  # when the figures were taken (epoch seconds)
    processors: tuple[ProcessorMetrics, ...] = field(default_factory=tuple)  # by processor name
    version: int = VERSION

    @property
    def busy(self) -> int:
        return sum(p.busy for p in self.processors)

    def processor(self, name: str) -> ProcessorMetrics | None:
        return next((p for p in self.processors if p.processor == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "node": self.node, "cpus": self.cpus, "ts": self.ts, "busy": self.busy,
                "processors": [p.to_dict() for p in self.processors]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeMetrics:
        return cls(node=data["node"], cpus=int(data["cpus"]), ts=float(data["ts"]),
                   processors=tuple(ProcessorMetrics.from_dict(p) for p in data.get("processors") or ()),
                   version=int(data.get("version") or VERSION))

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeMetrics:
        return cls.from_dict(json.loads(text))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse(text: Any) -> NodeMetrics | None:
    """A record, or None when it is missing, unreadable or of a newer version."""
    if text is None:
        return None
    try:
        data = json.loads(text)
        if int(data.get("version") or 0) > VERSION:
            return None
        return NodeMetrics.from_dict(data)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


class MetricsPublisher:
    """What an agent uses to publish its node's record: the stream, the latest key, the set of nodes."""

    def __init__(self, client: redis.Redis, maxlen: int = METRICS_MAXLEN, ttl: int = LATEST_TTL):
        self.client, self.maxlen, self.ttl = client, maxlen, ttl

    def publish(self, record: NodeMetrics) -> None:
        """One round trip: append to the stream (trimmed), replace the latest record, name the node."""
        text = record.to_json()
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(METRICS_STREAM, {"node": record.node, "record": text}, maxlen=self.maxlen, approximate=True)
        pipe.set(latest_key(record.node), text, ex=self.ttl)
        pipe.sadd(NODES_KEY, record.node)
        pipe.execute()

    def withdraw(self, node: str) -> None:
        """The node no longer publishes (its agent stops): readers that arrive see nothing of it."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(latest_key(node))
        pipe.srem(NODES_KEY, node)
        pipe.execute()


def latest(client: redis.Redis) -> list[NodeMetrics]:
    """The latest record of every node whose agent publishes now, by node name (two round trips)."""
    nodes = sorted(_text(n) for n in client.smembers(NODES_KEY))
    if not nodes:
        return []
    records = [_parse(text) for text in client.mget([latest_key(n) for n in nodes])]
    return [r for r in records if r is not None]


def stream_id(ts: float) -> str:
    """The first stream position at or after `ts` (epoch seconds), to `follow` from a moment."""
    return f"{int(ts * 1000)}-0"


def follow(client: redis.Redis, since: str | float = "$", block: float = 1.0,
           timeout: float | None = None) -> Iterator[NodeMetrics]:
    """Every record published after `since` ("$": from now on; a stream id; or epoch seconds), as it
    comes, from all nodes; ends after `timeout` seconds (None: never). Breaking out of the loop is how
    a reader stops: records come once a second per node, and at least every `block` seconds the
    generator checks its timeout."""
    position = stream_id(since) if isinstance(since, (int, float)) else since
    if position == "$":  # the current end, so that nothing published between two reads is missed
        last = client.xrevrange(METRICS_STREAM, count=1)
        position = _text(last[0][0]) if last else "0-0"
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        wait = block if deadline is None else max(0.0, min(block, deadline - time.monotonic()))
        reply = client.xread({METRICS_STREAM: position}, count=500, block=max(1, int(wait * 1000)))
        for _stream, entries in reply or ():
            for entry_id, values in entries:
                position = _text(entry_id)
                record = _parse(values.get(b"record", values.get("record")))
                if record is not None:
                    yield record


__all__ = ["NodeMetrics", "ProcessorMetrics", "MetricsPublisher", "latest", "follow", "stream_id", "latest_key",
           "decision_text", "METRICS_STREAM", "METRICS_MAXLEN", "NODES_KEY", "LATEST_TTL", "PUBLISH_EVERY", "VERSION"]
