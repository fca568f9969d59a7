"""Signed calls: a worker runs a message only if its sender holds the key of the user it names.

Every ElasticCode user has a call key that the model database issues (`elasticcode_call_key()`,
only to a user who holds RUN_TASK). The client signs each call it sends with its own key: an
HMAC-SHA256 over the call id, the task, the user, the parent and tracking ids and the message
body exactly as it goes on the wire (header `ec_sig`). The agent gives each worker its owner's key
(in the spec file, readable only by that owner's worker user: `kernel_agent/sandbox.py`). Before
a message reaches the pool, the worker's main process checks that it names the owner and carries
the owner's signature; any other message (unsigned, signed with another key, naming another
user, changed on the way, or sent while the owner lacks RUN_TASK) is refused: never run,
dead-lettered with the reason, recorded as `dead`, and the sender's `.get()` raises the reason.
The calls a worker sends along its plugs are signed with the same key, in the same way.

Call events are signed the same way (`event_fields`, field `sig`: an HMAC over all the other
fields), by the client for `queued` and by the worker for the rest, each with the key of the
event's user; the recorder writes only events that verify with that user's key, and only into
that user's calls (`kernel_agent/recorder.py`). Their `result` and `inputs` fields are sealed
for the user (`sealing.py`), like the results in the backend (`results.py`).

What it does not stop (README, Known limits): a signed message copied from the broker can be
published again (same call id: the delivery counter dead-letters it after a few deliveries).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from celery.signals import before_task_publish
from kombu.serialization import dumps

from . import codec, naming, sealing

KEYS: dict[str, str] = {}  # user -> call key: this process signs the calls it sends as these users
_installed = False


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def signature(key: str, call_id: str, task: str, user: str | None, parent: str | None, tracking: str | None,
              body: bytes, commit: str | None = None, plugs: str | None = None) -> str:
    """The HMAC-SHA256 (hex) of a call: its identity, what it may run on and whether it flows on
    along plugs (a replay's `ec_commit`, `ec_plugs`), and its body as sent."""
    message = "\n".join((_text(call_id), _text(task), _text(user), _text(parent), _text(tracking),
                         hashlib.sha256(body).hexdigest(), _text(commit), _text(plugs))).encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def _raw(body: Any) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


def _sign_outgoing(body: Any = None, headers: dict | None = None, **_: Any) -> None:
    """Celery's `before_task_publish`: sign a call named after a user whose key this process holds.

    The body is serialized here exactly as kombu serializes it right after (JSON, deterministic),
    so the worker checks the bytes it receives."""
    if headers is None:
        return
    user = headers.get(naming.H_USER)
    key = KEYS.get(user) if user else None
    if key is None:
        return
    _, _, data = dumps(body, serializer="json")
    headers[naming.H_SIGNATURE] = signature(key, headers.get("id"), headers.get("task"), user,
                                            headers.get(naming.H_PARENT), headers.get(naming.H_TRACKING), _raw(data),
                                            headers.get(naming.H_COMMIT), headers.get(naming.H_PLUGS))


def sign_as(user: str, key: str) -> None:
    """Sign from now on every call this process sends as `user` (idempotent)."""
    global _installed
    codec.install()
    KEYS[user] = key
    if not _installed:
        before_task_publish.connect(_sign_outgoing, weak=False, dispatch_uid="elasticcode-sign")
        _installed = True


def refusal(owner: str, key: str | None, headers: dict, body: bytes) -> str | None:
    """Why a message may not run on a worker of `owner` holding `key` (None: it may)."""
    if key is None:
        return (f"{owner!r} may not run calls (no RUN_TASK right, or no call key yet): "
                f"an admin grants it with `flow add privilege -u {owner} -n RUN_TASK`")
    user, sig = headers.get(naming.H_USER), headers.get(naming.H_SIGNATURE)
    if user != owner:
        return f"sent as {user!r}, but only {owner!r} runs the sockets of this processor"
    if not sig:
        return "not signed: calls are sent with an ElasticCode client (Socket, flow task run), not raw send_task"
    expected = signature(key, headers.get("id"), headers.get("task"), user, headers.get(naming.H_PARENT),
                         headers.get(naming.H_TRACKING), body, headers.get(naming.H_COMMIT), headers.get(naming.H_PLUGS))
    if not hmac.compare_digest(expected, str(sig)):
        return f"the signature does not match: not signed with {owner!r}'s key, or changed on the way"
    return None


_UNCHECKED = object()


def message_refusal(owner: str, key: str | None, headers: dict, message: Any) -> str | None:
    """`refusal` of a message a worker took, decided once per message: with the events on the
    broker's Redis, kombu's `QoS.append` (which records the received event) asks before the
    strategy does, for the same message object."""
    why = getattr(message, "ec_refusal", _UNCHECKED)
    if why is _UNCHECKED:
        why = refusal(owner, key, headers, _raw(message.body))
        message.ec_refusal = why
    return why


def verifying_strategy(task: Any, app: Any, consumer: Any, **kwargs: Any):
    """Celery's default strategy for `task`, behind the signature check (in the worker's main
    process, before the message reaches a pool process)."""
    from celery.worker.strategy import default as default_strategy  # the worker's: clients never load it

    handle = default_strategy(task, app, consumer, **kwargs)
    runtime = task.runtime

    def task_message_handler(message, body, ack, reject, callbacks, **options):
        headers = options.get("headers") or message.headers or {}
        why = message_refusal(runtime.owner, runtime.call_key, headers, message)
        if why is None:
            return handle(message, body, ack, reject, callbacks, **options)
        runtime.refuse(task, headers, why, message)
        message.ack()
        return None

    return task_message_handler


# -- call events -------------------------------------------------------------------------------

EVENT_SIGNATURE = "sig"  # the stream field that carries an event's signature
SEALED_EVENT_FIELDS = ("result", "inputs")  # what only the call's user may read


# One encoder: `json.dumps` with options builds a new one per call, which cost the recorder more
# than the HMAC itself (it verifies every event).
_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


_event_macs: dict[str, Any] = {}  # call key -> its HMAC with the event prefix taken in (copied per event)


def event_signature(key: str, fields: dict[str, str]) -> str:
    """The HMAC-SHA256 (hex) of an event's stream fields (all but the signature), in canonical JSON."""
    if EVENT_SIGNATURE in fields:
        fields = dict(fields)  # a copy then a pop: cheaper than a comprehension that leaves it out
        del fields[EVENT_SIGNATURE]
    mac = _event_macs.get(key)
    if mac is None:
        mac = _event_macs[key] = hmac.new(key.encode(), b"elasticcode event\n", hashlib.sha256)
    mac = mac.copy()  # a quarter cheaper than `hmac.digest`, which sets the key up again every time
    mac.update(_canonical_json(fields).encode())
    return mac.hexdigest()


def sign_event(fields: dict[str, str]) -> dict[str, str]:
    """Seal and sign an event's stream fields with its user's key, when this process holds it."""
    user = fields.get("user")
    key = KEYS.get(user) if user else None
    if key is None:
        return fields
    for name in SEALED_EVENT_FIELDS:
        if name in fields:
            fields[name] = json.dumps(sealing.seal(key, user, fields["call"], fields[name].encode()))
    fields[EVENT_SIGNATURE] = event_signature(key, fields)
    return fields


def event_refusal(fields: dict[str, str], key: str | None) -> str | None:
    """Why the recorder may not write an event (None: it may): it must verify with its user's key."""
    user = fields.get("user")
    if not user:
        return "names no user"
    if key is None:
        return f"{user!r} holds no call key (no RUN_TASK right)"
    sig = fields.get(EVENT_SIGNATURE)
    if not sig:
        return "not signed"
    if not hmac.compare_digest(event_signature(key, fields), sig):
        return f"the signature does not match {user!r}'s key"
    return None


def open_event(fields: dict[str, str], key: str) -> dict[str, str]:
    """A verified event's fields with the sealed ones opened (ValueError if one does not open)."""
    out = dict(fields)
    for name in SEALED_EVENT_FIELDS:
        if name in out:
            sealed = json.loads(out[name])
            if not sealing.is_sealed(sealed):
                raise ValueError(f"field {name!r} is not sealed")
            out[name] = sealing.open_sealed(key, out["call"], sealed).decode()
    out.pop(EVENT_SIGNATURE, None)
    return out


__all__ = ["KEYS", "sign_as", "signature", "refusal", "message_refusal", "verifying_strategy", "EVENT_SIGNATURE", "SEALED_EVENT_FIELDS",
           "event_signature", "sign_event", "event_refusal", "open_event"]
