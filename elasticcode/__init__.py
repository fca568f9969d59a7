"""ElasticCode: distributed dataflow and compute for Python, driven from Jupyter."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("elasticcode")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

_API = {"Socket", "Function", "Processor", "Plug", "parallel", "pipeline", "funnel", "configure",
        "ProcessorBase", "processor", "socket", "plug"}
# history() that waits for the calls whose results you have; the batch helpers over many handles.
_FROM_API = {"history", "progress", "as_completed", "gather"}


def __getattr__(name):
    """`from elasticcode import Socket, pipeline, history, ...` without importing Celery for the CLI."""
    if name in _API:
        from . import client

        return getattr(client, name)
    if name in _FROM_API:
        from .client import api

        return getattr(api, name)
    if name == "Executor":  # concurrent.futures on the network
        from .client.executor import Executor

        return Executor
    raise AttributeError(f"module 'elasticcode' has no attribute {name!r}")


def load_ipython_extension(ipython):  # pragma: no cover - exercised by the notebook tests
    """`%load_ext elasticcode` registers the magics of jupyter_ext."""
    from jupyter_ext import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover
    from jupyter_ext import unload_ipython_extension as unload

    unload(ipython)
