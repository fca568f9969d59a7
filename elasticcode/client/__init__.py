"""The client API (also importable as elasticcode.client.api)."""

from .api import AlchemyEncoder, Function, Plug, Processor, Socket, configure, funnel, parallel, pipeline
from .decorators import ProcessorBase, plug, processor, socket
from .history import history

__all__ = ["AlchemyEncoder", "Function", "Plug", "Processor", "Socket", "configure", "funnel", "parallel", "pipeline",
           "ProcessorBase", "plug", "processor", "socket", "history"]
