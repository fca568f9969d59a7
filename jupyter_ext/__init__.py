"""The IPython extension: `%load_ext elasticcode` (or `%load_ext jupyter_ext`) adds the `%flow` magics."""

from __future__ import annotations


def load_ipython_extension(ipython) -> None:
    from . import completion
    from .magics import FlowMagics

    ipython.register_magics(FlowMagics)
    completion.install(ipython)
    _display_call_trees_as_graphs(ipython)


def _display_call_trees_as_graphs(ipython) -> None:
    """`handle.tree()` and other CallTree values draw as a graph in the notebook."""
    from elasticcode.catalog.calls import CallTree

    def show(tree):
        from IPython.display import display

        from .calltree import call_tree_widget

        display(call_tree_widget(tree))

    ipython.display_formatter.ipython_display_formatter.for_type(CallTree, show)


def unload_ipython_extension(ipython) -> None:  # pragma: no cover - IPython keeps magics registered
    pass
