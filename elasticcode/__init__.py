"""ElasticCode: distributed dataflow and compute for Python, driven from Jupyter."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("elasticcode")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"


def load_ipython_extension(ipython):  # pragma: no cover - exercised by the notebook tests
    """`%load_ext elasticcode` registers the magics of jupyter_ext."""
    from jupyter_ext import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover
    from jupyter_ext import unload_ipython_extension as unload

    unload(ipython)
