"""Names shared by clients, workers and agents: broker queues, task names, Redis keys."""

from __future__ import annotations

import uuid

# Coordination keys in the Redis of the result backend.
EVENTS_STREAM = "ec:events"
EVENTS_REJECTED_STREAM = "ec:events:rejected"  # entries the database refused, kept for inspection
TOPOLOGY_KEY = "ec:topology"
TOPOLOGY_VERSION_KEY = "ec:topology:version"
DEAD_LETTER_LIST = "ec:dead"
RECORDER_GROUP = "recorders"
JOIN_TTL_SECONDS = 24 * 3600
DELIVERY_TTL_SECONDS = 7 * 24 * 3600

# Message headers of a call (all JSON strings).
H_TRACKING = "ec_tracking"  # root call id of the flow run
H_PARENT = "ec_parent"  # call that caused this one
H_ARGUMENT = "ec_argument"  # argument name a plug bound the value to
H_USER = "ec_user"  # role that made the call
H_PLUG = "ec_plug"  # plug that forwarded it

JOIN_NAMESPACE = uuid.UUID("5d1f8a84-8c1e-4f43-9d59-2a0d3cbb1a6e")


def broker_queue(queue: str, processor: str) -> str:
    """Each processor consumes its own copy of a socket queue (the manual's `pyfi.queue1.proc1`),
    so a worker never receives a task of another processor it cannot run."""
    return f"{queue}.{processor}"


def task_name(socket: str) -> str:
    return socket


def deliveries_key(call_id: str) -> str:
    return f"ec:deliveries:{call_id}"


def join_key(target_socket: str, tracking: str) -> str:
    return f"ec:join:{target_socket}:{tracking}"


def join_call_id(target_socket: str, tracking: str) -> str:
    """The joined call's id is derived from (target, flow run), so a re-sent join is the same call."""
    return str(uuid.uuid5(JOIN_NAMESPACE, f"{target_socket}|{tracking}"))


def channel(processor: str, kind: str) -> str:
    """Pub/sub channel `flow listen -n PROCESSOR -c KIND` subscribes to."""
    return f"ec.{processor}.{kind}"
