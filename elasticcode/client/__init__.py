"""The client API (also importable as elasticcode.client.api)."""

from .decorators import ProcessorBase, plug, processor, socket
from .encoder import AlchemyEncoder
from .history import history
from .objects import Function, Plug, Processor, Socket
from .settings import configure
from .workflow import funnel, parallel, pipeline

__all__ = ["AlchemyEncoder", "Function", "Plug", "Processor", "Socket", "configure", "funnel", "parallel", "pipeline",
           "ProcessorBase", "plug", "processor", "socket", "history"]
