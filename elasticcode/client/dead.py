"""Dead letters you can work with: list, show, retry and purge the calls set aside in `ec:dead`.

Workers set a message aside in two cases (`runtime/sockettask.py`): it was delivered more than
the processor's limit (it kills its worker: a poison message; the call is recorded `dead`), or
its signature did not hold (refused before running; no call record). Each entry is a JSON object
in the Redis list `ec:dead` (`runtime/naming.py`); this module reads them as they are written.

A retry sends the message again with its call id and headers (flow run, parent, user, the
signature when the entry carries it) to its socket's queue, after resetting the call's delivery
counter, so the call gets its full number of deliveries again and completes under the same id:
its history row stays the same call. The stored failure is forgotten first, so whoever waits on
the call (`AsyncResult(id).get()`, the handle `retry` returns) waits for the new run.

An entry that does not carry the message's signature (entries written before the worker recorded
it) is signed again by this process, which can only sign as its own user: such calls can be
retried by the user who made them. Refused entries without the message body cannot be retried.

    import elasticcode.client.dead as dead
    dead.dead_letters()            # a DataFrame: call, socket, kind, reason, deliveries, at, ...
    dead.show(call_id)             # the whole entry, with the call's record when you may read it
    dead.retry([call_id])          # handles; dead.retry(every=True) retries all retryable ones
    dead.purge()                   # removes them (the CLI asks first)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from ..config import Settings
from ..errors import ElasticCodeError, NotFound
from ..runtime import naming

COLUMNS = ("call", "socket", "kind", "reason", "deliveries", "at", "user", "worker", "state", "retryable")
ENTRY_HEADERS = (naming.H_TRACKING, naming.H_PARENT, naming.H_ARGUMENT, naming.H_USER, naming.H_PLUG,
                 naming.H_SIGNATURE, getattr(naming, "H_COMMIT", "ec_commit"), getattr(naming, "H_PLUGS", "ec_plugs"))


@dataclass
class DeadLetter:
    """One entry of `ec:dead`, parsed; `raw` is its exact text (what LREM removes)."""

    raw: bytes
    data: dict[str, Any]
    row: dict[str, Any] | None = field(default=None)  # the call's record, when this user may read it

    @property
    def call(self) -> str | None:
        return self.data.get("call") or (self.data.get("headers") or {}).get("id")

    @property
    def socket(self) -> str | None:
        return self.data.get("socket") or (self.row or {}).get("name")

    @property
    def kind(self) -> str:
        return "refused" if "refused" in self.data else "dead"

    @property
    def reason(self) -> str:
        if self.kind == "refused":
            return f"refused: {self.data['refused']}"
        deliveries = self.data.get("deliveries")
        return f"delivered {deliveries - 1 if isinstance(deliveries, int) else '?'} times without finishing (poison message)"

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.data.get("headers") or {})

    @property
    def user(self) -> str | None:
        return self.headers.get(naming.H_USER) or self.data.get("sent_as") or (self.row or {}).get("owner")

    @property
    def has_body(self) -> bool:
        return "body" in self.data or "args" in self.data or "kwargs" in self.data

    def retryable(self, me: str | None = None) -> bool:
        """Whether a retry can send this message again: its arguments are here, and its signature
        too, or this process can sign it (it is this user's call, and the call record says how)."""
        if not self.call or not self.has_body:
            return False
        if self.headers.get(naming.H_SIGNATURE):
            return True
        return self.row is not None and (me is None or self.user == me)

    def summary(self, me: str | None = None) -> dict[str, Any]:
        at = self.data.get("at")
        return {"call": self.call, "socket": self.socket, "kind": self.kind, "reason": self.reason,
                "deliveries": self.data.get("deliveries"),
                "at": datetime.fromtimestamp(at, tz=timezone.utc) if isinstance(at, (int, float)) else None,
                "user": self.user, "worker": self.data.get("worker"), "state": (self.row or {}).get("state"),
                "retryable": self.retryable(me)}

    def arguments(self) -> tuple[list, dict]:
        """The call's args and kwargs as JSON values, never decoded into Python objects: sent
        again, they serialize to the same bytes the signature covers."""
        if "body" in self.data:
            body = self.data["body"]
            args, kwargs, *_ = json.loads(body) if isinstance(body, str) else body
            return list(args), dict(kwargs)
        return list(self.data.get("args") or []), dict(self.data.get("kwargs") or {})


class DeadLetters:
    """The dead-letter list of one configuration (the Redis of events and routes)."""

    def __init__(self, settings: Settings | None = None):
        from .dispatch import Dispatcher
        from .settings import default_settings

        self.settings = settings or default_settings()
        self.dispatcher = Dispatcher.for_settings(self.settings)
        self.redis = self.dispatcher.redis

    # -- reading --------------------------------------------------------------------------------

    def entries(self, calls: Iterable[str] | None = None) -> list[DeadLetter]:
        """The entries, newest first (optionally only those of `calls`), with their call records."""
        from .dispatch import reaching_redis

        with reaching_redis():
            raws = self.redis.lrange(naming.DEAD_LETTER_LIST, 0, -1)
        letters = []
        for raw in raws:
            try:
                data = json.loads(raw)
            except ValueError:
                data = {"refused": "an entry that is not JSON", "text": raw.decode(errors="replace")[:200]}
            if isinstance(data, dict):
                letters.append(DeadLetter(raw, data))
        if calls is not None:
            wanted = {_call_id(c) for c in calls}
            letters = [d for d in letters if d.call in wanted]
        rows = self._rows([d.call for d in letters if d.call])
        for letter in letters:
            letter.row = rows.get(letter.call or "")
        return letters

    def _rows(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The call records of `ids` this user may read (row-level security decides)."""
        if not ids or not self.settings.db:
            return {}
        from sqlalchemy import select

        from ..catalog import rights
        from ..db import model as m
        from ..db.engine import session_scope

        try:
            with session_scope(self.settings.db) as session:
                rights.require(session, "LS_CALLS")
                found = session.execute(select(m.Call.id, m.Call.name, m.Call.owner, m.Call.state, m.Call.tracking,
                                               m.Call.parent, m.Call.argument).where(m.Call.id.in_(sorted(set(ids)))))
                return {str(r.id): dict(r._mapping) for r in found}
        except ElasticCodeError:
            return {}

    def frame(self) -> pd.DataFrame:
        letters = self.entries()
        me = self._me()
        return pd.DataFrame([d.summary(me) for d in letters], columns=list(COLUMNS))

    def show(self, call_id: str) -> dict[str, Any]:
        letter = self._one(call_id)
        out = {**letter.summary(self._me()), "entry": letter.data}
        if letter.row is not None:
            out["record"] = letter.row
        return out

    def _one(self, call_id: str) -> DeadLetter:
        found = self.entries([call_id])
        if not found:
            raise NotFound(f"no dead letter for call {call_id}: list them with `flow dead ls`")
        return found[0]

    def _me(self) -> str | None:
        try:
            return self.dispatcher.user
        except ElasticCodeError:
            return None

    # -- acting ---------------------------------------------------------------------------------

    def retry(self, calls: Iterable[str] | None = None, every: bool = False) -> list[Any]:
        """Send the calls again (see the module); returns their handles (CallHandle), in order.
        A call that cannot be retried is named in the error, and nothing is sent for it."""
        from .dispatch import reaching_redis
        from .handles import CallHandle

        if every == (calls is not None):
            raise ElasticCodeError("name the calls to retry, or retry every dead letter (--all), not both")
        letters = self.entries(None if every else list(calls))
        me = self._me()
        if every:
            letters = [d for d in letters if d.retryable(me)]
        else:
            check_found(calls, letters)
            blocked = [d for d in letters if not d.retryable(me)]
            if blocked:
                raise ElasticCodeError("cannot retry " + "; ".join(f"{d.call}: {self._why_not(d, me)}" for d in blocked))
        handles, seen = [], set()
        with reaching_redis():
            for letter in letters:
                if letter.call in seen:
                    continue
                seen.add(letter.call)
                if self.redis.lrem(naming.DEAD_LETTER_LIST, 1, letter.raw) == 0:
                    continue  # someone else retried or purged it meanwhile
                try:
                    handles.append(CallHandle(self._send_again(letter), letter.socket or "?"))
                except BaseException:
                    self.redis.lpush(naming.DEAD_LETTER_LIST, letter.raw)  # not sent: keep it
                    raise
        return handles

    def _why_not(self, letter: DeadLetter, me: str | None) -> str:
        if not letter.has_body:
            return ("the entry does not hold the message (a call refused before it ran: its arguments were not kept); "
                    "call the socket again instead")
        if letter.row is None:
            return "its call record is not readable by you (another user's call, or not recorded yet)"
        return f"it is {letter.user}'s call and its entry has no signature: only {letter.user} can sign it again"

    def _send_again(self, letter: DeadLetter):
        from ..runtime import signing
        from ..runtime.events import QUEUED, CallEvent, EventStream

        row = letter.row or {}
        headers = {k: v for k, v in letter.headers.items() if k in ENTRY_HEADERS and v is not None}
        headers.setdefault(naming.H_TRACKING, str(row.get("tracking") or letter.call))
        for key, column in ((naming.H_PARENT, "parent"), (naming.H_ARGUMENT, "argument"), (naming.H_USER, "owner")):
            if row.get(column) and key not in headers:
                headers[key] = str(row[column])
        if not headers.get(naming.H_SIGNATURE):
            self.dispatcher.sign_calls()  # this process signs as its user: `retryable` checked it is the call's
        else:
            try:  # to sign the queued event below, when the call is this user's (the message keeps its signature)
                self.dispatcher.sign_calls()
            except ElasticCodeError:
                pass
        task, queue = letter.data.get("task"), letter.data.get("queue")
        route = None
        if not (task and queue):
            route = self.dispatcher.resolve(letter.socket or "")
            task, queue = task or route.task, queue or route.queue
        args, kwargs = letter.arguments()
        call = letter.call
        # A fresh delivery count, and no stale failure for whoever waits on the call.
        self.redis.delete(naming.deliveries_key(call))
        self.dispatcher.app.backend.forget(call)
        if headers.get(naming.H_USER) in signing.KEYS:  # the recorder writes only events signed by the call's user
            EventStream(self.redis).emit(CallEvent.now(call, QUEUED, socket=letter.socket,
                                                       tracking=headers.get(naming.H_TRACKING),
                                                       parent=headers.get(naming.H_PARENT), user=headers.get(naming.H_USER),
                                                       processor=route.processor if route else None))
        return self.dispatcher.app.send_task(task, args=args, kwargs=kwargs, queue=queue, task_id=call, headers=headers)

    def purge(self, calls: Iterable[str] | None = None) -> int:
        """Remove the entries (all, or those of `calls`); returns how many were removed."""
        letters = self.entries(None if calls is None else list(calls))
        if calls is not None:
            check_found(calls, letters)
        return self.remove(letters)

    def remove(self, letters: Iterable[DeadLetter]) -> int:
        """Remove exactly these entries (one that arrived since they were listed stays)."""
        from .dispatch import reaching_redis

        removed = 0
        with reaching_redis():
            for letter in letters:
                removed += self.redis.lrem(naming.DEAD_LETTER_LIST, 1, letter.raw)
        return removed


def _call_id(value: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ElasticCodeError(f"{value!r} is not a call id: copy one from `flow dead ls`") from None


def check_found(calls: Iterable[str] | None, letters: list[DeadLetter]) -> None:
    missing = sorted({_call_id(c) for c in calls or ()} - {d.call for d in letters})
    if missing:
        raise NotFound(f"no dead letter for call {', '.join(missing)}: list them with `flow dead ls`")


# -- the Python API ---------------------------------------------------------------------------------

def dead_letters(settings: Settings | None = None) -> pd.DataFrame:
    """The dead letters as a DataFrame, newest first (columns: see COLUMNS)."""
    return DeadLetters(settings).frame()


def show(call_id: str, settings: Settings | None = None) -> dict[str, Any]:
    return DeadLetters(settings).show(call_id)


def retry(calls: Iterable[str] | str | None = None, every: bool = False, settings: Settings | None = None) -> list[Any]:
    if isinstance(calls, str):
        calls = [calls]
    return DeadLetters(settings).retry(calls, every=every)


def purge(calls: Iterable[str] | str | None = None, settings: Settings | None = None) -> int:
    if isinstance(calls, str):
        calls = [calls]
    return DeadLetters(settings).purge(calls)


__all__ = ["DeadLetter", "DeadLetters", "dead_letters", "show", "retry", "purge", "COLUMNS"]
