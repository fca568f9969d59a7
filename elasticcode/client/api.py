"""The Python API: Socket (alias Function), Processor, Plug, and the workflow combinators.

    from elasticcode import Socket, parallel, pipeline, funnel
    do_something = Socket(name="pyfi.processors.sample.do_something")
    do_something("hi")                      # run a call and return its result
    do_something.delay("hi").get()          # a handle
    pipeline([do_something.p("One"), do_something.p("Two")])().get()

Objects are created or updated idempotently in the model database when given more than a name.
The code that runs is always the code at the processor's git commit, loaded by the agents; the
client never ships functions.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from .. import catalog, config
from ..config import Settings
from ..db.engine import session_scope
from ..errors import ElasticCodeError, NotFound
from ..runtime.dispatch import Dispatcher
from .handles import CallHandle
from .workflow import Funnel, Parallel, Partial, Pipeline, funnel, parallel, pipeline

_settings: Settings | None = None
_settings_lock = threading.Lock()


def default_settings() -> Settings:
    """Configuration as the CLI resolves it (environment, then the ini file), read once."""
    global _settings
    with _settings_lock:
        if _settings is None:
            _settings = config.load()
        return _settings


def configure(db: str | None = None, broker: str | None = None, backend: str | None = None, ini: str | None = None) -> Settings:
    """Point the API at other services (the default is the active `flow` configuration)."""
    global _settings
    with _settings_lock:
        _settings = config.load(ini, db=db, broker=broker, backend=backend)
        return _settings


def reset_settings() -> None:
    """Read the configuration again on next use (after `flow up`, `flow login`, `flow --config`)."""
    global _settings
    with _settings_lock:
        _settings = None
    Dispatcher._instances.clear()


def dispatcher_for_default_settings() -> Dispatcher:
    return Dispatcher.for_settings(default_settings())


def _model_dict(obj: Any) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}


def _upsert(kind: str, name: str, values: dict[str, Any]) -> Any:
    """Create the object, or update the fields that differ: importing a network twice changes nothing."""
    settings = default_settings()
    values = {k: v for k, v in values.items() if v is not None}
    with session_scope(settings.require_db()) as session:
        try:
            current = catalog.find(session, kind, name)
        except NotFound:
            return _model_dict(catalog.add(session, kind, {"name": name, **values}, settings.repositories))
        return _model_dict(catalog.update(session, kind, name, values, settings.repositories) if values else current)


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
            with session_scope(default_settings().require_db()) as s:
                self.processor = _model_dict(catalog.find(s, "processor", name))

    def __repr__(self) -> str:
        p = self.processor
        return f"Processor({self.name!r}, module={p.get('module')!r}, commit={p.get('commit')!r}, status={p.get('status')!r})"

    def _repr_html_(self) -> str:
        from .reprs import html_fields

        keys = ("name", "module", "gitrepo", "commit", "branch", "concurrency", "hostname", "status", "status_message")
        return html_fields(f"processor {self.name}", {k: self.processor.get(k) for k in keys})


class Socket:
    """A socket: call it to run its function on the network.

    `Socket(name=...)` refers to an existing socket; with `processor=`, `queue=` and `task=` it
    creates or updates one (the object API of the manual's listing 2).
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
            with session_scope(default_settings().require_db()) as s:
                self._socket = _model_dict(catalog.find(s, "socket", self.name))
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

    def delay(self, *args: Any, **kwargs: Any) -> CallHandle:
        """Send a call and return its handle at once."""
        return CallHandle(dispatcher_for_default_settings().send(self.name, args, kwargs), self.name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run a call and return its result (raises with the socket's error on failure)."""
        return self.delay(*args, **kwargs).get()

    def p(self, *args: Any, **kwargs: Any) -> Partial:
        """A deferred call for pipeline/parallel/funnel; a step's input is prepended to args."""
        return Partial(self.name, args, kwargs)

    @property
    def _p(self):
        return self.p


Function = Socket


class Plug:
    """A plug from `source` to `target` (sockets or their names), optionally bound to `argument`."""

    def __init__(self, name: str, source: Socket | str, target: Socket | str, queue: Any = None,
                 argument: str | None = None, type: str | None = None, description: str | None = None,
                 processor: Any = None, user: Any = None, **_ignored: Any):
        self.name = name
        self.plug = _upsert("plug", name, dict(source=_name_of(source), target=_name_of(target), queue=_queue_name(queue),
                                               argument=argument, type=type, description=description))

    def __repr__(self) -> str:
        return f"Plug({self.name!r})"

    def _repr_html_(self) -> str:
        from .reprs import html_fields

        return html_fields(f"plug {self.name}", {k: self.plug.get(k) for k in ("name", "type", "argument", "owner")})


class ProcessorBase:
    """Base class of `@processor` classes (elasticcode.client.decorators); `.processor` is set on declaration."""

    processor: Processor | None = None


class AlchemyEncoder(json.JSONEncoder):
    """`json.dumps(socket.socket, cls=AlchemyEncoder)` as in the manual: datetimes become ISO strings."""

    def default(self, o: Any) -> Any:
        if hasattr(o, "isoformat"):
            return o.isoformat()
        return super().default(o)


__all__ = ["Socket", "Function", "Processor", "Plug", "pipeline", "parallel", "funnel", "Pipeline", "Parallel",
           "Funnel", "Partial", "configure", "default_settings", "AlchemyEncoder", "ProcessorBase"]
