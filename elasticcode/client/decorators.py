"""Declare a network from plain classes (the manual's listing 1 of 12.2):

    @processor(name="proc1", gitrepo=..., module="pyfi.processors.sample", concurrency=1)
    class ProcessorA(ProcessorBase):
        @plug(name="plug1", target="proc2.do_this", queue={"name": "queue1"})
        @socket(name="proc1.do_something", processor="proc1", queue={"name": "sockq1"})
        def do_something(message): ...

Importing the module creates or updates the processor, its sockets and plugs; importing it
again changes nothing. The function bodies here are documentation only: what runs is the
function of that name in `module` at the processor's git commit, loaded by the agents.
"""

from __future__ import annotations

from typing import Any

from .objects import Plug, Processor, Socket

_SOCKET = "__elasticcode_socket__"
_PLUGS = "__elasticcode_plugs__"
__all__ = ["ProcessorBase", "processor", "socket", "plug"]


class ProcessorBase:
    """Base of `@processor` classes; `.processor` is set on declaration."""

    processor: Processor | None = None


def socket(name: str, processor: str | None = None, queue: Any = None, interval: int | None = None, beat: bool = False,
           arguments: bool = False, description: str | None = None, **_ignored: Any):
    def mark(func):
        setattr(func, _SOCKET, dict(name=name, processor=processor, queue=queue, interval=interval,
                                    description=description or (func.__doc__ or "").strip() or None))
        return func

    return mark


def plug(name: str, target: str, queue: Any = None, argument: str | None = None, type: str | None = None, **_ignored: Any):
    def mark(func):
        plugs = list(getattr(func, _PLUGS, ()))
        plugs.append(dict(name=name, target=target, queue=queue, argument=argument, type=type))
        setattr(func, _PLUGS, plugs)
        return func

    return mark


def processor(name: str, gitrepo: str, module: str, concurrency: int | None = None, **options: Any):
    """Create or update the processor, then the sockets and plugs its methods declare."""

    def declare(cls):
        cls.processor = Processor(name=name, gitrepo=gitrepo, module=module, concurrency=concurrency,
                                  **{k: v for k, v in options.items() if k in ("branch", "commit", "hostname",
                                                                             "requirements", "beat", "modulepath",
                                                                             "description")})
        for func in vars(cls).values():
            spec = getattr(func, _SOCKET, None)
            if spec is None:
                continue
            if spec["processor"] not in (None, name):
                from ..errors import ElasticCodeError

                raise ElasticCodeError(f"socket {spec['name']!r} names processor {spec['processor']!r} inside @processor {name!r}")
            queue = spec["queue"] or {"name": f"{name}.queue"}
            Socket(name=spec["name"], processor=name, queue=queue, task=func.__name__, interval=spec["interval"],
                   description=spec["description"])
            for p in getattr(func, _PLUGS, ()):
                Plug(name=p["name"], source=spec["name"], target=p["target"], queue=p["queue"],
                     argument=p["argument"], type=p["type"])
        return cls

    return declare
