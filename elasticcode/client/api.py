"""The Python API in one import, as the manual's `pyfi.client.api`:

    from elasticcode.client.api import Socket, parallel, pipeline, funnel
    do_something = Socket(name="pyfi.processors.sample.do_something")
    do_something("hi")                      # run a call and return its result
    do_something.delay("hi").get()          # a handle
    pipeline([do_something.p("One"), do_something.p("Two")])().get()

Each name lives in the module of its job (objects, workflow, settings, decorators, history,
batch for many handles at once).
"""

from __future__ import annotations

import functools
import inspect

from .batch import as_completed, gather, progress
from .decorators import ProcessorBase
from .encoder import AlchemyEncoder
from .history import history as _history
from .objects import Function, Plug, Processor, Socket
from .settings import configure, default_dispatcher, default_settings, reset_settings
from .workflow import Funnel, Parallel, Partial, Pipeline, funnel, parallel, pipeline


@functools.wraps(_history)
def history(*args, **kwargs):
    # Read-your-writes: calls whose `.get()` returned are in the frame (client/recorded.py).
    from .recorded import settle

    given = inspect.signature(_history).bind(*args, **kwargs).arguments
    settings, root = given.get("settings") or default_settings(), given.get("root")
    settle(settings, [root] if root else None)
    return _history(*args, **kwargs)


__all__ = ["Socket", "Function", "Processor", "Plug", "pipeline", "parallel", "funnel", "Pipeline", "Parallel",
           "Funnel", "Partial", "configure", "default_settings", "default_dispatcher", "reset_settings",
           "AlchemyEncoder", "ProcessorBase", "history", "progress", "as_completed", "gather"]
