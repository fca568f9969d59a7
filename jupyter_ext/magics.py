"""`%flow ARGS` and `%%flow processor NAME`: the `flow` CLI in the kernel, plus notebook-only views.

`%flow <any flow command>` runs in-process; listings come back as pandas DataFrames
(`df = %flow ls calls`). Notebook extras: `%flow graph [--flow NAME]` (live graph),
`%flow call ID --tree` (call tree graph), `%flow builder` (a form to add objects).
Errors raise UsageError with one line; the kernel stays alive.
"""

from __future__ import annotations

import shlex
from typing import Any

import click
import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from elasticcode.cli import one_line, run
from elasticcode.client.settings import default_settings, reset_settings
from elasticcode.errors import ElasticCodeError

# Commands after which the kernel's cached configuration must be read again.
RECONFIGURING = {"up", "down", "login", "logout", "--config", "-c", "-d", "--db", "--broker", "--backend", "-i", "--ini"}


def to_frame(value: Any) -> Any:
    """Listings (lists of rows) become DataFrames; one record becomes a one-row DataFrame."""
    if isinstance(value, list) and all(isinstance(row, dict) for row in value):
        return pd.DataFrame(value)
    if isinstance(value, dict) and value and not any(isinstance(v, (dict, list)) for v in value.values()):
        return pd.DataFrame([value])
    return value


def _guard(action, *args, **kwargs) -> Any:
    """Run `action`, turning every user error into a one-line UsageError."""
    try:
        return action(*args, **kwargs)
    except ElasticCodeError as exc:
        raise UsageError(one_line(str(exc))) from None
    except click.exceptions.Exit:
        return None  # --help, --version
    except click.exceptions.Abort:
        raise UsageError("aborted") from None
    except click.ClickException as exc:
        raise UsageError(one_line(exc.format_message())) from None


def _split(line: str) -> list[str]:
    try:
        args = shlex.split(line)
    except ValueError as exc:
        raise UsageError(one_line(f"cannot parse `%flow {line}`: {exc}")) from None
    if any("\0" in arg for arg in args):  # (from a `{var}`) no shell can pass one to `flow`, nor PostgreSQL store it
        raise UsageError(one_line(f"cannot parse `%flow {line}`: an argument holds a NUL character"))
    return args


def run_flow(line: str) -> Any:
    """Run one `flow` command line in this process."""
    args = _split(line)
    if args[:1] == ["graph"]:
        return _guard(_graph, args[1:])
    if args[:1] == ["builder"]:
        from .forms import builder

        return _guard(builder, default_settings())
    if args[:1] == ["call"]:
        return _guard(_call, args[1:])
    try:
        return _guard(lambda: to_frame(run(args)))
    finally:
        if RECONFIGURING & set(args[:3]):
            reset_settings()


@click.command("graph")
@click.option("--flow", "flow_name", default=None, help="Only the processors of this flow")
@click.option("--static", is_flag=True, help="Do not follow calls live")
def _graph_command(flow_name: str | None, static: bool):
    from .graph import show_graph

    return show_graph(default_settings(), flow=flow_name, live=not static)


def _graph(args: list[str]):
    return _graph_command.main(args, prog_name="%flow graph", standalone_mode=False)


@click.command("call")
@click.argument("call_id")
@click.option("-t", "--tree", is_flag=True, help="Draw the call's tree")
@click.option("-g", "--graph", is_flag=True, help="Draw the whole flow run")
def _call_command(call_id: str, tree: bool, graph: bool):
    if not (tree or graph):
        return to_frame(run(["ls", "call", "--id", call_id]))
    from elasticcode.catalog.calls import call_tree
    from elasticcode.db.engine import session_scope

    from .calltree import call_tree_widget

    with session_scope(default_settings().require_db()) as session:
        data = call_tree(session, call_id, whole_flow=graph)
    return call_tree_widget(data)


def _call(args: list[str]):
    return _call_command.main(args, prog_name="%flow call", standalone_mode=False)


@click.command("processor")
@click.argument("name")
@click.option("-c", "--concurrency", type=int, default=None, help="Most pool processes busy at once on a node")
@click.option("--min", "min_concurrency", type=int, default=None, help="Pool processes kept while idle (default 0)")
@click.option("-h", "--hostname", default=None, help="Run on this node only (default: every node, as cores allow)")
@click.option("--requirements", default=None, help='Extra requirements, e.g. "pandas>=2 requests"')
@click.option("--queue", default=None, help="Queue of the sockets (default: NAME.queue)")
@click.option("--remote", default=None, help="Push the code to this git remote (for agents on other machines)")
def _processor_command(name: str, concurrency: int | None, min_concurrency: int | None, hostname: str | None,
                       requirements: str | None, queue: str | None, remote: str | None, source: str = ""):
    from elasticcode.client.publish import publish_processor

    return publish_processor(default_settings(), name, source, concurrency, requirements, queue, remote,
                             min_concurrency=min_concurrency, hostname=hostname)


@magics_class
class FlowMagics(Magics):
    @line_cell_magic
    def flow(self, line: str, cell: str | None = None) -> Any:
        """`%flow COMMAND ...` runs a flow command; `%%flow processor NAME [-c N] [--min N] [-h NODE] [--requirements ...] [--queue Q]`
        commits the cell to git and deploys it as a processor with one socket per public function."""
        if cell is None:
            return run_flow(line)
        args = _split(line)
        if args[:1] != ["processor"]:
            raise UsageError("%%flow cells take `processor NAME [-c N] [--requirements \"...\"] [--queue Q]`")
        params = _guard(lambda: _processor_command.make_context("%%flow processor", args[1:]).params)
        if params is None:  # --help was shown
            return None
        return _guard(_processor_command.callback, **params, source=cell)
