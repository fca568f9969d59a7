"""The object API: Processor, Socket (alias Function) and Plug, over rows of the model database.

Objects are created or updated idempotently when given more than a name. The code that runs
is always the code at the processor's git commit, loaded by the agents; the client never
ships functions.
"""

from __future__ import annotations

from typing import Any

from .. import catalog
from ..db.engine import session_scope
from ..errors import ElasticCodeError
from .calling import Callable
from .handles import CallHandle
from .settings import default_dispatcher, default_settings
from .workflow import Partial


def _upsert(kind: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Create the object, or update the fields that differ: importing a network twice changes nothing.
    Queues named by sockets and plugs are made on the way, as in the manual's object API."""
    settings = default_settings()
    with session_scope(settings.require_db()) as session:
        return catalog.as_dict(catalog.upsert(session, kind, name, values, settings.repositories, create_queues=True))


def _row(kind: str, name: str) -> dict[str, Any]:
    with session_scope(default_settings().require_db()) as session:
        return catalog.as_dict(catalog.find(session, kind, name))


def _queue_name(queue: Any) -> str | None:
    if queue is None or isinstance(queue, str):
        return queue
    if isinstance(queue, dict) and queue.get("name"):
        return queue["name"]
    raise ElasticCodeError(f"queue {queue!r} is not a name or a {{'name': ...}} dict")


def _name_of(obj: Any) -> str:
    return obj if isinstance(obj, str) else obj.name


class Processor:
    """A processor row (created or updated). `.processor` is its data, as a dict."""

    def __init__(self, name: str, module: str | None = None, gitrepo: str | None = None, branch: str | None = None,
                 commit: str | None = None, concurrency: int | None = None, hostname: str | None = None,
                 requirements: str | None = None, beat: bool | None = None, modulepath: str | None = None,
                 description: str | None = None, user: Any = None, **_ignored: Any):
        self.name = name
        values = dict(module=module, gitrepo=gitrepo, branch=branch, commit=commit, concurrency=concurrency,
                      hostname=hostname, requirements=requirements, beat=beat, modulepath=modulepath,
                      description=description)
        if any(v is not None for v in values.values()):
            self.processor = _upsert("processor", name, values)
        else:
            self.processor = _row("processor", name)

    def __repr__(self) -> str:
        p = self.processor
        return f"Processor({self.name!r}, module={p.get('module')!r}, commit={p.get('commit')!r}, status={p.get('status')!r})"

    def _repr_html_(self) -> str:
        from .reprs import html_fields

        keys = ("name", "module", "gitrepo", "commit", "branch", "concurrency", "hostname", "status", "status_message")
        return html_fields(f"processor {self.name}", {k: self.processor.get(k) for k in keys})


class Socket(Callable):
    """A socket: call it to run its function on the network.

    `Socket(name=...)` refers to an existing socket; with `processor=`, `queue=` and `task=` it
    creates or updates one (the object API of the manual's listing 2). `sock(x)` returns the
    result; `sock.delay(x)` and `sock.apply_async(args=(x,), countdown=10)` return a CallHandle
    at once; `sock.p(x)` (or Celery's `sock.s(x)`) is a deferred call for workflows.
    """

    def __init__(self, name: str, processor: Processor | str | None = None, queue: Any = None, task: str | None = None,
                 interval: int | None = None, description: str | None = None, user: Any = None, **_ignored: Any):
        self.name = name
        self._socket: dict[str, Any] | None = None
        if processor is not None or queue is not None or task is not None:
            values = dict(processor=_name_of(processor) if processor is not None else None,
                          queue=_queue_name(queue), function=task, interval=interval, description=description)
            self._socket = _upsert("socket", name, values)

    @property
    def socket(self) -> dict[str, Any]:
        """The socket's row as a dict (read from the database on first use)."""
        if self._socket is None:
            self._socket = _row("socket", self.name)
        return self._socket

    def __repr__(self) -> str:
        return f"Socket({self.name!r})"

    def _repr_html_(self) -> str:
        from .reprs import html_fields

        try:
            data = self.socket
        except ElasticCodeError as exc:
            return html_fields(f"socket {self.name}", {"error": str(exc)})
        keys = ("name", "status", "status_message", "interval", "owner", "lastupdated")
        return html_fields(f"socket {self.name}", {k: data.get(k) for k in keys})

    def _send(self, args: tuple, kwargs: dict, options: dict[str, Any]) -> CallHandle:
        """Send a call and return its handle at once (`delay` and `apply_async` come here)."""
        return CallHandle(default_dispatcher().send(self.name, args, kwargs, **options), self.name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run a call and return its result (raises with the socket's error on failure)."""
        return self.delay(*args, **kwargs).get()

    def p(self, *args: Any, **kwargs: Any) -> Partial:
        """A deferred call for pipeline/parallel/funnel; a step's input is prepended to args."""
        return Partial(self.name, args, kwargs)

    s = p  # Celery's name for a signature

    @property
    def _p(self):
        return self.p


Function = Socket


class Plug:
    """A plug from `source` to `target` (sockets or their names), optionally bound to `argument`."""

    def __init__(self, name: str, source: Socket | str, target: Socket | str, queue: Any = None,
                 argument: str | None = None, type: str | None = None, description: str | None = None,
                 processor: Any = None, user: Any = None, max_queued: int | None = None,
                 max_bytes: int | None = None, **_ignored: Any):
        self.name = name
        self.plug = _upsert("plug", name, dict(source=_name_of(source), target=_name_of(target), queue=_queue_name(queue),
                                               argument=argument, type=type, description=description,
                                               max_queued=max_queued, max_bytes=max_bytes))

    def __repr__(self) -> str:
        return f"Plug({self.name!r})"

    def _repr_html_(self) -> str:
        from .reprs import html_fields

        return html_fields(f"plug {self.name}", {k: self.plug.get(k) for k in ("name", "type", "argument", "owner")})


__all__ = ["Processor", "Socket", "Function", "Plug"]
