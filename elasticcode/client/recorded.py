"""Read-your-writes on the call history: once a handle's `.get()` returned, readers see that call.

Results come back through the result backend before the recorder has written the call's last
event to PostgreSQL (the worker sends it after storing the result; the recorder writes it in its
next batch). So `.get()` only notes what the caller now knows is done, which costs nothing on the
hot path, and the readers (`history()`, `handle.to_frame()`, `handle.tree()`, `%flow ls calls`)
first wait, a few seconds at most, until the recorded rows agree.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text

from ..config import Settings
from ..db.engine import session_scope
from ..runtime.events import ENDING_EVENTS, STATE_OF_EVENT

FINAL = sorted(STATE_OF_EVENT[e] for e in ENDING_EVENTS)  # finished, failed, dead
SETTLE_SECONDS = 5.0  # longest wait for the recorder; past it, readers show what is recorded
MAX_PENDING = 10_000  # notes kept; the oldest are forgotten (a reader then just does not wait for them)


@dataclass(frozen=True)
class Note:
    """A call, or a workflow whose `steps` socket calls have all returned, known done by the client."""

    root: str
    steps: int | None = None  # None: one call; else: a workflow run and how many step calls it made


_pending: OrderedDict[str, Note] = OrderedDict()
_lock = threading.Lock()


def note_call(call_id: str) -> None:
    _remember(Note(call_id))


def note_workflow(root: str, steps: int) -> None:
    _remember(Note(root, steps))


def _remember(note: Note) -> None:
    with _lock:
        _pending[note.root] = note
        while len(_pending) > MAX_PENDING:
            _pending.popitem(last=False)


def pending(roots: Iterable[str] | None = None) -> list[Note]:
    with _lock:
        if roots is None:
            return list(_pending.values())
        return [_pending[r] for r in roots if r in _pending]


def _forget(notes: Iterable[Note]) -> None:
    with _lock:
        for note in notes:
            if _pending.get(note.root) == note:
                del _pending[note.root]


CALLS_DONE = text("SELECT CAST(id AS text) FROM call WHERE id = ANY(CAST(:ids AS uuid[])) AND state = ANY(:final)")
# A workflow is recorded once its root is closed, none of its combinators is open, and as many of
# its step calls are closed as the client saw return.
WORKFLOW_DONE = text("""
WITH flow AS (SELECT id, parent, processor, state FROM call
              WHERE tracking = CAST(:root AS uuid) OR id = CAST(:root AS uuid))
SELECT (SELECT count(*) FROM flow WHERE id = CAST(:root AS uuid) AND state = ANY(:final)) = 1
   AND (SELECT count(*) FROM flow WHERE processor = 'workflow' AND NOT state = ANY(:final)) = 0
   AND (SELECT count(*) FROM flow WHERE processor IS DISTINCT FROM 'workflow' AND state = ANY(:final)
          AND (id = CAST(:root AS uuid) OR parent IN (SELECT id FROM flow WHERE processor = 'workflow'))) >= :steps
""")


def _recorded(session, notes: list[Note]) -> list[Note]:
    calls = [n for n in notes if n.steps is None]
    done: list[Note] = []
    if calls:
        ids = set(session.execute(CALLS_DONE, {"ids": [n.root for n in calls], "final": FINAL}).scalars())
        done += [n for n in calls if n.root in ids]
    for note in notes:
        if note.steps is not None and session.execute(
                WORKFLOW_DONE, {"root": note.root, "final": FINAL, "steps": note.steps}).scalar():
            done.append(note)
    return done


def settle(settings: Settings, roots: Iterable[str] | None = None, timeout: float = SETTLE_SECONDS) -> bool:
    """Wait until the calls noted as done (of `roots`, or all) are recorded; False if `timeout` passed first."""
    notes = pending(roots)
    deadline, pause = time.monotonic() + timeout, 0.01
    while notes:
        with session_scope(settings.require_db()) as session:
            done = _recorded(session, notes)
        _forget(done)
        notes = [n for n in notes if n not in done]
        if not notes:
            break
        if time.monotonic() + pause > deadline:
            # Waited once for these: the next reader does not wait again (a call whose record was
            # deleted, or a recorder that is down, would otherwise cost every reader the timeout).
            _forget(notes)
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
    return True
