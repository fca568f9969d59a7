"""`elasticcode.Executor`: the network behind the standard `concurrent.futures.Executor`.

    with elasticcode.Executor() as ex:
        futures = [ex.submit("clean", path) for path in paths]     # a Socket or a socket name
        for f in concurrent.futures.as_completed(futures): ...
        results = list(ex.map(square, range(100)))                # in order

So anything written against an executor (a thread pool, Dask's, loky's) runs on the network,
every call recorded as usual. The futures are real `concurrent.futures.Future`s (`wait`,
`as_completed`, callbacks), filled by one watcher thread per executor, however many calls are
in flight: with a Redis result backend it subscribes to each call's result channel and reads
the results stored before it subscribed in one MGET (a sweep every second catches anything a
reconnection lost); with another backend it polls. Results are opened as `.get()` opens them
(sealed results with this user's key), failures raise the socket's own exception.

`cancel()` revokes a call no worker has started (its function not yet running) and returns
True; a started call cannot be cancelled (False). `shutdown(cancel_futures=True)` does that for
every call still outstanding.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any

from ..config import Settings
from ..errors import ElasticCodeError

SWEEP_SECONDS = 1.0  # the safety-net MGET over every pending call
WAIT_SECONDS = 0.02  # longest a newly submitted call waits to be watched
POLL_SECONDS = 0.05  # backends without pub/sub: how often pending calls are asked


def socket_name(fn: Any) -> str:
    """The socket a `submit`/`map` target names: a Socket (or anything with a `.name`) or a name."""
    name = fn if isinstance(fn, str) else getattr(fn, "name", None)
    if not isinstance(name, str) or not name:
        raise ElasticCodeError(f"{fn!r} is not a socket: pass a Socket or a socket name to submit/map "
                               "(plain Python functions do not run on the network: deploy them as a processor)")
    return name


class CallFuture(futures.Future):
    """A Future for one call; `call_id` is its id in the history, `socket` its socket."""

    def __init__(self, executor: Executor, call_id: str, socket: str):
        super().__init__()
        self.executor, self.call_id, self.socket = executor, call_id, socket

    def __repr__(self) -> str:
        return f"<CallFuture {self.socket} {self.call_id} {super().__repr__().split(' state=')[-1]}"

    def cancel(self) -> bool:
        return self.executor._cancel(self)

    def _base_cancel(self) -> bool:
        return super().cancel()


class Executor(futures.Executor):
    """A `concurrent.futures.Executor` whose calls run on the network (see the module)."""

    def __init__(self, settings: Settings | None = None):
        self._settings = settings
        self._dispatcher = None
        self._lock = threading.Lock()  # pending calls, cancel and resolve
        self._submit_lock = threading.Lock()  # submit and shutdown
        self._pending: dict[str, CallFuture] = {}
        self._added: list[str] = []  # calls submitted since the watcher last looked
        self._removed: list[str] = []  # calls done or cancelled since then
        self._shut = False
        self._watcher: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<elasticcode.Executor {len(self._pending)} pending{' shut down' if self._shut else ''}>"

    @property
    def dispatcher(self):
        if self._dispatcher is None:
            from .dispatch import Dispatcher
            from .settings import default_dispatcher

            self._dispatcher = Dispatcher.for_settings(self._settings) if self._settings else default_dispatcher()
        return self._dispatcher

    # -- the Executor interface -----------------------------------------------------------------

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> CallFuture:
        """Send one call of socket `fn` at once; its future is done when the call is."""
        name = socket_name(fn)
        with self._submit_lock:
            if self._shut:
                raise RuntimeError("cannot schedule new futures after shutdown")
            result = self.dispatcher.send(name, args, kwargs)
            future = CallFuture(self, result.id, name)
            with self._lock:
                self._pending[result.id] = future
                self._added.append(result.id)
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._watch, name="elasticcode-executor", daemon=True)
                    self._watcher.start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new calls from now on; `cancel_futures` cancels the calls not started yet, `wait`
        waits for the others (the calls themselves run on whatever the executor does)."""
        with self._submit_lock:
            self._shut = True
        with self._lock:
            outstanding = list(self._pending.values())
        if cancel_futures:
            for future in outstanding:
                future.cancel()
        if wait:
            futures.wait(outstanding)

    # -- cancel and resolve (under the lock, so a future is cancelled or filled, never both) --

    def _cancel(self, future: CallFuture) -> bool:
        with self._lock:
            if self._pending.get(future.call_id) is not future or future.running():
                return future._base_cancel()  # already done, cancelled or known started: Future's own answer
            if self._started(future.call_id):
                future.set_running_or_notify_cancel()
                return False
            del self._pending[future.call_id]
            self._removed.append(future.call_id)
            future._base_cancel()
        future.set_running_or_notify_cancel()  # CANCELLED_AND_NOTIFIED: wait() and as_completed() see it
        try:
            self.dispatcher.result(future.call_id).revoke()
        except Exception:  # noqa: BLE001 - the future is cancelled either way; a late result is ignored
            pass
        return True

    def _started(self, call_id: str) -> bool:
        """A worker counts each delivery as the function starts (runtime/sockettask.py)."""
        from ..runtime import naming

        try:
            return bool(self.dispatcher.redis.exists(naming.deliveries_key(call_id)))
        except Exception:  # noqa: BLE001 - unknown: the revoke still stops it if it has not started
            return False

    def _resolve(self, call_id: str, meta: dict[str, Any]) -> None:
        from celery import states

        from .recorded import note_call

        with self._lock:
            future = self._pending.pop(call_id, None)
            if future is None or future.cancelled():
                return
            self._removed.append(call_id)
            if not future.running():
                future.set_running_or_notify_cancel()
        note_call(call_id)  # history() then waits until the recorder has this call
        value = meta.get("result")
        if meta.get("status") == states.SUCCESS:
            future.set_result(value)
            return
        if not isinstance(value, BaseException):
            value = self.dispatcher.app.backend.exception_to_python(value) if value else ElasticCodeError(
                f"call {call_id} of {future.socket} ended {meta.get('status')}")
        trace = meta.get("traceback")
        if trace and hasattr(value, "add_note"):
            value.add_note(f"(raised by socket {future.socket} in call {call_id}; the worker's traceback:)\n{trace}")
        future.set_exception(value)

    # -- the watcher thread ---------------------------------------------------------------------

    def _waiting_locked(self) -> list[str]:
        """The calls still pending; when none, the watcher ends (a new submit starts another)."""
        if not self._pending:
            self._watcher = None
        return list(self._pending)

    def _watch(self) -> None:
        backend = self.dispatcher.app.backend
        client = getattr(backend, "client", None)
        if client is None or not hasattr(client, "pubsub") or not hasattr(backend, "get_key_for_task"):
            return self._poll()
        import redis as redis_py

        while True:
            try:
                if self._watch_redis(backend, client):
                    return
            except (redis_py.ConnectionError, redis_py.TimeoutError, OSError):
                time.sleep(0.5)  # the backend restarted: subscribe again and read everything once more
            except Exception as exc:  # noqa: BLE001 - never leave futures waiting on a watcher that is gone
                self._fail_all(exc)
                return

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            pending = list(self._pending)
        for call in pending:
            self._resolve(call, {"status": "FAILURE", "result": ElasticCodeError(
                f"the executor could not watch call {call} ({exc.__class__.__name__}: {exc}); it may still run: "
                f"see elasticcode.history() for its outcome")})

    def _changes(self) -> tuple[list[str], list[str], list[str]] | None:
        """(pending, added, removed) since the last look, or None when nothing is pending."""
        with self._lock:
            added, removed = self._added, self._removed
            self._added, self._removed = [], []
            pending = self._waiting_locked()
            return None if not pending else (pending, added, removed)

    def _watch_redis(self, backend: Any, client: Any) -> bool:
        from celery import states

        pubsub = client.pubsub(ignore_subscribe_messages=True)
        subscribed: dict[bytes, str] = {}  # result channel -> call
        with self._lock:
            self._added = list(self._pending)  # a new connection watches every pending call afresh
        try:
            last_sweep = time.monotonic()
            while True:
                changes = self._changes()
                if changes is None:
                    return True
                pending, added, removed = changes
                gone = [key for key in (_key(backend, call) for call in removed) if key in subscribed]
                if gone:
                    pubsub.unsubscribe(*gone)
                    for key in gone:
                        del subscribed[key]
                live = set(pending)
                new = [call for call in dict.fromkeys(added) if call in live]
                if new:
                    keys = [_key(backend, call) for call in new]
                    pubsub.subscribe(*keys)
                    subscribed.update(zip(keys, new, strict=True))
                    self._read(backend, client, new)  # stored before we subscribed
                if time.monotonic() - last_sweep > SWEEP_SECONDS:
                    self._read(backend, client, pending)
                    last_sweep = time.monotonic()
                message = pubsub.get_message(timeout=WAIT_SECONDS)
                while message is not None:
                    call = subscribed.get(_as_bytes(message.get("channel")))
                    if call and message.get("type") == "message":
                        meta = _decode(backend, call, message["data"])
                        if meta and meta.get("status") in states.READY_STATES:
                            self._resolve(call, meta)
                    message = pubsub.get_message(timeout=0)
        finally:
            pubsub.close()

    def _read(self, backend: Any, client: Any, calls: list[str]) -> None:
        from celery import states

        for start in range(0, len(calls), 1000):
            chunk = calls[start:start + 1000]
            for call, raw in zip(chunk, client.mget([_key(backend, c) for c in chunk]), strict=True):
                if raw is not None:
                    meta = _decode(backend, call, raw)
                    if meta and meta.get("status") in states.READY_STATES:
                        self._resolve(call, meta)

    def _poll(self) -> None:
        from celery import states

        while changes := self._changes():
            for call in changes[0]:
                result = self.dispatcher.result(call)
                if result.state in states.READY_STATES:
                    self._resolve(call, {"status": result.state, "result": result.result, "traceback": result.traceback})
            time.sleep(POLL_SECONDS)


def _decode(backend: Any, call_id: str, raw: Any) -> dict[str, Any] | None:
    """A stored result's meta; one that cannot be read fails its own future, not the watcher."""
    try:
        return backend.decode_result(raw)
    except Exception as exc:  # noqa: BLE001 - a foreign or corrupt value under the call's key
        return {"status": "FAILURE", "result": ElasticCodeError(f"the result of call {call_id} cannot be read: "
                                                                f"{exc.__class__.__name__}: {exc}")}


def _key(backend: Any, call_id: str) -> bytes:
    return _as_bytes(backend.get_key_for_task(call_id))


def _as_bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value or b"")


__all__ = ["Executor", "CallFuture", "socket_name"]
