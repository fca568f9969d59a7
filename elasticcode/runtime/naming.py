"""Names shared by clients, workers and agents: broker queues, task names, Redis keys."""

from __future__ import annotations

import os
import socket
import uuid

# Coordination keys in the Redis of the result backend.
EVENTS_STREAM = "ec:events"
EVENTS_REJECTED_STREAM = "ec:events:rejected"  # entries the database refused, kept for inspection
ROUTES_KEY = "ec:routes"  # the published RouteTable (elasticcode.runtime.routes)
ROUTES_VERSION_KEY = "ec:routes:version"
DEAD_LETTER_LIST = "ec:dead"
RECORDER_GROUP = "recorders"
JOIN_TTL_SECONDS = 24 * 3600
# kombu's Redis transport keeps every delivered, unacknowledged message in this hash (its default
# `unacked_key`), until the ack, or until the visibility timeout puts it back in its queue.
KOMBU_UNACKED_KEY = "unacked"
INFLIGHT_TTL_SECONDS = 7 * 24 * 3600
DELIVERY_TTL_SECONDS = 7 * 24 * 3600

# Message headers of a call (all JSON strings).
H_TRACKING = "ec_tracking"  # root call id of the flow run
H_PARENT = "ec_parent"  # call that caused this one
H_ARGUMENT = "ec_argument"  # argument name a plug bound the value to
H_USER = "ec_user"  # role that made the call
H_PLUG = "ec_plug"  # plug that forwarded it
H_SIGNATURE = "ec_sig"  # the call signed with its user's key (runtime/signing.py)
H_COMMIT = "ec_commit"  # a replay: run only on a worker at this git commit (`flow call replay`)
H_PLUGS = "ec_plugs"  # "off": a replay that does not flow on along the socket's plugs

JOIN_NAMESPACE = uuid.UUID("5d1f8a84-8c1e-4f43-9d59-2a0d3cbb1a6e")


def broker_queue(queue: str, processor: str) -> str:
    """Each processor consumes its own copy of a socket queue (the manual's `pyfi.queue1.proc1`),
    so a worker never receives a task of another processor it cannot run."""
    return f"{queue}.{processor}"


def task_name(socket: str) -> str:
    return socket


def deliveries_key(call_id: str) -> str:
    return f"ec:deliveries:{call_id}"


def node_name() -> str:
    """This machine's node name when none is given (an agent's `--hostname` overrides it)."""
    return os.environ.get("ELASTICCODE_HOSTNAME") or socket.gethostname()


LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


def pinned_node(hostname: str | None) -> str | None:
    """The node a processor's `-h` names. `localhost` (the manual's quickstart form) means this
    machine's node, the one `flow up` starts an agent for, never every node."""
    if hostname and hostname.strip().lower() in LOCAL_NAMES:
        return node_name()
    return hostname or None


def worker_name(processor: str, node: str | None = None) -> str:
    """The Celery hostname of a processor's worker on a node (what calls record as `worker`)."""
    return f"{processor}@{node or node_name()}"


def inflight_pattern(node: str) -> str:
    """The in-flight logs of every worker process of a node (see `inflight_key`), as a Redis SCAN
    pattern: glob characters in the node's name are escaped."""
    escaped = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in node)
    return f"ec:inflight:*@{escaped}:*"


def inflight_key(worker: str, pid: int) -> str:
    """Delivery tags one worker process took (in the broker's Redis, beside kombu's unacked hash)."""
    return f"ec:inflight:{worker}:{pid}"


def ready_key(worker: str, pid: int) -> str:
    """Set by a worker process once it consumes (value: what it runs, JSON; `runtime/live.py`),
    removed when it stops: the agent's readiness check in a rolling restart."""
    return f"ec:live:{worker}:{pid}"


def ready_pattern(processor: str) -> str:
    """The ready keys (`ready_key`) of every worker process of a processor, as a Redis SCAN pattern."""
    escaped = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in processor)
    return f"ec:live:{escaped}@*"


def pressure_key(owner: str, plug: str) -> str:
    """Set (with a short expiry) while a forward along the plug waits for the target's queue to drain."""
    return f"ec:pressure:{owner}:{plug}"


PRESSURE_PATTERN = "ec:pressure:*"


def join_key(target_socket: str, tracking: str) -> str:
    return f"ec:join:{target_socket}:{tracking}"


def join_call_id(target_socket: str, tracking: str) -> str:
    """The joined call's id is derived from (target, flow run), so a re-sent join is the same call."""
    return str(uuid.uuid5(JOIN_NAMESPACE, f"{target_socket}|{tracking}"))


# Readers of every processor's live channel (a pattern subscription: the API server's feeds, the
# notebook graph) also subscribe to this channel, on which nothing is published: the recorder
# counts its subscribers (PUBSUB NUMSUB; pattern subscriptions cannot be counted by pattern, and
# kombu's own fanout uses them) and builds the live messages only when someone reads them.
LIVE_READERS_CHANNEL = "ec.live-readers"


def channel(processor: str, kind: str) -> str:
    """Pub/sub channel `flow listen -n PROCESSOR -c KIND` subscribes to."""
    return f"ec.{processor}.{kind}"
