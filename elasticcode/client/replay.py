"""Replay a recorded call: the same inputs, again, as a new call linked to the original (`replay_of`).

`flow call replay ID`, `handle.replay()` and `%flow replay ID` all come here (through
`handles.replay_call`).

Inputs: a call made by a client records its arguments on its queued event (`dispatch.py`, up to
ELASTICCODE_INPUTS_LIMIT bytes of JSON); a joined call records them when its last argument arrives
(`runtime/sockettask.py`); a call a plain plug made has one argument, its parent's result (RESULT
plug) or error (ERROR plug), which is recorded already and is not stored twice.

Code: by default the replay runs at the commit the original ran (recorded with every call). Workers
run one commit each, their processor's, so the replay goes to the processor's workers when they run
that commit, and is refused with the reason when they have moved on (`--latest-code` runs it on
today's code instead). The message also carries the commit (header `ec_commit`), and a worker at
another commit (a rolling restart in between) fails it with the reason rather than running other
code. Starting a temporary worker at the old commit was not chosen: it needs a checkout, a virtual
environment and a process on some node, which only agents make, for one call, and its plugs would
run today's code downstream anyway; pinning the processor back (`flow update processor --commit`)
does the same thing in the open, for as long as the user wants.

Plugs: without `downstream` the replay does not flow on (header `ec_plugs: off`); with it, it flows
along today's plugs, and its calls form a new subtree (a new flow run rooted at the replay).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ..config import Settings
from ..db import model as m
from ..db.engine import session_scope
from ..errors import ElasticCodeError, NotFound
from ..runtime import codec, naming

WORKFLOW_PROCESSOR = "workflow"  # the rows pipeline/parallel/funnel write for themselves
FIND_SECONDS = 5.0  # how long a replay waits for a call that just ran to be recorded


def send_replay(call_id: str, *, latest_code: bool = False, downstream: bool = False,
                settings: Settings | None = None) -> tuple[Any, str]:
    """Send call `call_id` again with its recorded inputs: the new call's AsyncResult and socket
    (`handles.replay_call` makes a handle of them)."""
    from .dispatch import Dispatcher
    from .recorded import settle
    from .settings import default_settings

    settings = settings or default_settings()
    call_id = _uuid(call_id)
    settle(settings, [call_id])
    dispatcher = Dispatcher.for_settings(settings)
    plan = _plan(settings, dispatcher, call_id)
    commit = None
    if not latest_code:
        commit = plan["commit"]
        if not commit:
            raise ElasticCodeError(f"call {call_id} has no recorded commit (it never started, or ran before commits "
                                   "were recorded): replay it on the processor's current code with --latest-code")
        running = running_commits(dispatcher.redis, plan["processor"])
        if running and commit not in running:
            now = ", ".join(sorted(c[:12] for c in running))
            raise ElasticCodeError(
                f"call {call_id} ran {plan['name']} at commit {commit[:12]}, and processor {plan['processor']} now runs "
                f"{now}: replay it on today's code with --latest-code, or pin the processor back "
                f"(`flow update processor -n {plan['processor']} --commit {commit}`) and replay again")
    sent = dispatcher.send(plan["name"], plan["args"], plan["kwargs"], replay_of=call_id, commit=commit,
                           plugs=downstream)
    return sent, plan["name"]


def _uuid(call_id: str) -> str:
    try:
        return str(uuid.UUID(str(call_id)))
    except ValueError:
        raise ElasticCodeError(f"{call_id!r} is not a call id (a UUID, as `flow ls calls` shows)") from None


def _plan(settings: Settings, dispatcher: Any, call_id: str) -> dict[str, Any]:
    """What to send: socket, processor, commit, args and kwargs, from the call's record."""
    deadline = time.monotonic() + FIND_SECONDS
    while True:
        with session_scope(settings.require_db()) as session:
            call = session.get(m.Call, call_id)
            if call is not None and call.name != "?":
                if call.processor == WORKFLOW_PROCESSOR:
                    raise ElasticCodeError(f"call {call_id} is a {call.name}'s own record, not a socket call: replay "
                                           "the calls of its steps (`flow ls calls -t ROOT`)")
                args, kwargs = recorded_inputs(session, dispatcher, call)
                return {"name": call.name, "processor": call.processor, "commit": call.commit, "args": args,
                        "kwargs": kwargs}
        if time.monotonic() > deadline:
            raise NotFound(f"call {call_id} is not recorded (or not yours): list your calls with `flow ls calls`")
        time.sleep(0.2)


def recorded_inputs(session: Any, dispatcher: Any, call: m.Call) -> tuple[tuple, dict]:
    """The call's (args, kwargs), or the reason they cannot be had."""
    if call.inputs is not None:
        if "args" not in call.inputs:
            size, limit = call.inputs.get("bytes"), call.inputs.get("limit")
            raise ElasticCodeError(
                f"call {call.id} cannot be replayed: its arguments were {size} bytes of JSON, over the {limit}-byte "
                "limit for recorded inputs (ELASTICCODE_INPUTS_LIMIT in the caller's environment, default 65536); "
                "raise it for future calls, or pass large data by path or URL")
        return tuple(_decoded(call.inputs["args"])), dict(_decoded(call.inputs["kwargs"]))
    if call.parent and not call.argument:
        return (_parent_value(session, dispatcher, call),), {}
    raise ElasticCodeError(f"call {call.id} cannot be replayed: it has no recorded inputs (made before inputs were "
                           "recorded, or with ELASTICCODE_INPUTS_LIMIT=0)")


def _parent_value(session: Any, dispatcher: Any, call: m.Call) -> Any:
    """A plain plug's call got its parent's result (RESULT plug) or error (ERROR plug)."""
    parent = session.get(m.Call, call.parent)
    if parent is None:
        raise ElasticCodeError(f"call {call.id} cannot be replayed: its input was the outcome of call {call.parent}, "
                               "which is not recorded (or not yours)")
    if parent.state in ("failed", "dead"):
        return {"error": parent.error, "socket": parent.name, "call": parent.id}
    if parent.result is not None:
        return _decoded(parent.result)
    found = dispatcher.result(parent.id)
    if found.state == "SUCCESS":
        return found.result
    raise ElasticCodeError(f"call {call.id} cannot be replayed: its input was the result of call {parent.id}, too big "
                           "to be recorded (over 64 KB of JSON) and no longer in the result backend")


def _decoded(value: Any) -> Any:
    """A recorded JSON value back as the caller passed it (frames, arrays, timestamps restored)."""
    return codec.loads(json.dumps(value))


def running_commits(client: Any, processor: str | None) -> set[str]:
    """The commits the processor's running worker processes run (what they said once consuming)."""
    if not processor:
        return set()
    keys = list(client.scan_iter(match=naming.ready_pattern(processor), count=500))
    commits = set()
    for raw in client.mget(keys) if keys else ():
        if raw:
            try:
                commit = json.loads(raw).get("commit")
            except (ValueError, AttributeError):
                continue
            if commit:
                commits.add(commit)
    return commits


__all__ = ["send_replay", "recorded_inputs", "running_commits"]
