"""The IPython extension: `%load_ext elasticcode` (or `%load_ext jupyter_ext`) adds the `%flow` magics."""

from __future__ import annotations


def load_ipython_extension(ipython) -> None:
    from . import completion
    from .magics import FlowMagics

    ipython.register_magics(FlowMagics)
    completion.install(ipython)


def unload_ipython_extension(ipython) -> None:  # pragma: no cover - IPython keeps magics registered
    pass
