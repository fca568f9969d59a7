"""The IPython extension: `%load_ext elasticcode` (or `%load_ext jupyter_ext`) adds the `%flow` magics.

Loading imports nothing heavy (no click, pandas, SQLAlchemy or Celery): the magic, completion and
displays import what they need on first use, so `%load_ext` takes a few milliseconds.
"""

from __future__ import annotations


def flow(line: str, cell: str | None = None):
    """`%flow COMMAND ...` runs a flow command in this kernel (listings return DataFrames);
    `%%flow processor NAME [-c N] [--min N] [-h NODE] [--requirements ...] [--queue Q]` commits the
    cell to git and deploys it as a processor with one socket per public function."""
    from .magics import flow_magic

    return flow_magic(line, cell)


def load_ipython_extension(ipython) -> None:
    from . import completion, errors

    ipython.register_magic_function(flow, magic_kind="line_cell", magic_name="flow")
    completion.install(ipython)
    errors.install(ipython)
    _display_call_trees_as_graphs(ipython)


def _display_call_trees_as_graphs(ipython) -> None:
    """`handle.tree()` and other CallTree values draw as a graph in the notebook (registered by
    name: the catalog is imported only once a tree exists)."""

    def show(tree):
        from IPython.display import display

        from .calltree import call_tree_widget

        display(call_tree_widget(tree))

    ipython.display_formatter.ipython_display_formatter.for_type_by_name("elasticcode.catalog.calls", "CallTree", show)


def unload_ipython_extension(ipython) -> None:  # pragma: no cover - IPython keeps magics registered
    pass
