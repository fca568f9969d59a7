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

from . import notebook
from .errors import notebook_form

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
    """Run `action`, turning every user error into a one-line UsageError (hints as `%flow ...`)."""
    try:
        return action(*args, **kwargs)
    except ElasticCodeError as exc:
        raise UsageError(notebook_form(one_line(str(exc)))) from None
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


# Listings of calls: what a DataFrame of calls starts with (the ids, long, come last).
CALL_COLUMNS_FIRST = ("name", "state", "started", "duration", "worker")
READS_CALLS = (["ls", "calls"], ["ls", "call"], ["call"])


def _settle() -> None:
    """Calls whose `.get()` returned are in the listing (read-your-writes, a few seconds at most)."""
    from elasticcode.client.recorded import settle

    settle(default_settings())


def _calls_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    first = [c for c in CALL_COLUMNS_FIRST if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def _all_calls(args: list[str]) -> Any:
    """`ls calls` prints one page; the DataFrame holds every matching call (paging is for display)."""
    from elasticcode.catalog.calls import page_of_calls
    from elasticcode.cli.calls import ls_calls
    from elasticcode.db.engine import session_scope

    shown = run(args)
    options = ls_calls.make_context("ls calls", list(args[2:])).params
    paged = any(a in ("-p", "--page", "-r", "--rows") or a.startswith(("--page=", "--rows=")) for a in args[2:])
    if not isinstance(shown, list) or paged or len(shown) < options["rows"]:
        return _calls_frame(shown) if isinstance(shown, list) else shown
    with session_scope(default_settings().require_db()) as session:
        rows, _ = page_of_calls(session, 1, 2**62, options["unfinished"], options["ascend"], options["tracking"],
                                options["task"])
    return _calls_frame(rows)


def _names(args: list[str]) -> list[str]:
    """The values of -n/--name in an argument list."""
    return [value for flag, value in zip(args, args[1:], strict=False) if flag in ("-n", "--name")] + \
        [a.split("=", 1)[1] for a in args if a.startswith("--name=")]


def _remember_processors(args: list[str]) -> None:
    """Processors added from this notebook (`add processor`, `compose build FILE`): the graph shows them."""
    if args[:2] == ["add", "processor"]:
        notebook.PROCESSORS.update(_names(args[2:]))
    elif args[:2] == ["compose", "build"] and len(args) == 3:
        from pathlib import Path

        from elasticcode.catalog.compose import load

        notebook.PROCESSORS.update(p["name"] for p in load(Path(args[2])).get("processors") or [] if p.get("name"))


def run_flow(line: str) -> Any:
    """Run one `flow` command line in this process."""
    args = _split(line)
    if args[:1] == ["replay"]:  # `%flow replay ID` is `flow call replay ID`: the new call's handle
        args = ["call", *args]
    if any(args[:len(prefix)] == prefix for prefix in READS_CALLS):
        _guard(_settle)
    if args[:2] == ["ls", "calls"]:
        return _guard(_all_calls, args)
    if args[:1] == ["graph"]:
        return _guard(_graph, args[1:])
    if args[:1] == ["builder"]:
        from .forms import builder

        return _guard(builder, default_settings())
    if args[:1] == ["call"] and args[1:2] != ["replay"]:
        return _guard(_call, args[1:])
    try:
        value = _guard(lambda: to_frame(run(args)))
        _remember_processors(args)
        return value
    finally:
        if RECONFIGURING & set(args[:3]):
            reset_settings()


@click.command("graph")
@click.option("--flow", "flow_name", default=None, help="Only the processors of this flow")
@click.option("--all", "everything", is_flag=True,
              help="Every processor (default: this notebook's and those with calls in the last hour)")
@click.option("--static", is_flag=True, help="Do not follow calls live")
def _graph_command(flow_name: str | None, everything: bool, static: bool):
    from .graph import show_graph

    return show_graph(default_settings(), flow=flow_name, live=not static, scope="all" if everything else "notebook")


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

    published = publish_processor(default_settings(), name, source, concurrency, requirements, queue, remote,
                                  min_concurrency=min_concurrency, hostname=hostname)
    notebook.PROCESSORS.add(name)  # the graph shows this notebook's processors
    return published


def flow_magic(line: str, cell: str | None = None) -> Any:
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


@magics_class
class FlowMagics(Magics):
    """The same magic as a Magics class, for shells that register classes."""

    @line_cell_magic
    def flow(self, line: str, cell: str | None = None) -> Any:
        return flow_magic(line, cell)
