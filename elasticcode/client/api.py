"""The Python API in one import, as the manual's `pyfi.client.api`:

    from elasticcode.client.api import Socket, parallel, pipeline, funnel
    do_something = Socket(name="pyfi.processors.sample.do_something")
    do_something("hi")                      # run a call and return its result
    do_something.delay("hi").get()          # a handle
    pipeline([do_something.p("One"), do_something.p("Two")])().get()

Each name lives in the module of its job (objects, workflow, settings, decorators, history).
"""

from .decorators import ProcessorBase
from .encoder import AlchemyEncoder
from .objects import Function, Plug, Processor, Socket
from .settings import configure, default_dispatcher, default_settings, reset_settings
from .workflow import Funnel, Parallel, Partial, Pipeline, funnel, parallel, pipeline

__all__ = ["Socket", "Function", "Processor", "Plug", "pipeline", "parallel", "funnel", "Pipeline", "Parallel",
           "Funnel", "Partial", "configure", "default_settings", "default_dispatcher", "reset_settings",
           "AlchemyEncoder", "ProcessorBase"]
