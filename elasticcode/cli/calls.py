"""`flow ls calls` and `flow ls call`: the call history with provenance."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.tree import Tree

from ..catalog import calls as call_queries
from ..runtime.events import CALL_COLUMNS
from .context import FlowContext, emit, json_flag, output_mode, pass_flow
from .objects import ls


@ls.command("calls")
@click.option("-p", "--page", default=1, show_default=True, help="Page number")
@click.option("-r", "--rows", default=10, show_default=True, help="Rows per page")
@click.option("-u", "--unfinished", is_flag=True, help="Only calls that have not finished")
@click.option("-a", "--ascend", is_flag=True, help="Oldest first")
@click.option("-t", "--tracking", default=None, help="Only calls of this flow run (root id)")
@click.option("-tk", "--task", default=None, help="Only calls of this socket")
@json_flag
@pass_flow
def ls_calls(ctx: FlowContext, page: int, rows: int, unfinished: bool, ascend: bool, tracking: str | None,
             task: str | None, as_json: bool) -> list[dict[str, Any]]:
    """List calls"""
    with ctx.session() as session:
        found, total = call_queries.page_of_calls(session, page, rows, unfinished, ascend, tracking, task)
    shown = emit(ctx, found, "Calls", as_json, columns=("id", "name", "state", "owner", "started", "finished", "duration"))
    mode = output_mode(ctx, as_json)
    if mode in ("table", "lines"):  # JSON and CSV stay parseable; in pipes the footer goes to stderr
        pages = max(1, -(-total // rows))
        click.echo(f"Page {page} of {pages} of {total} total records", err=mode == "lines")
    return shown


def _tree(node: dict[str, Any], branch: Tree | None = None) -> Tree:
    call = node["call"]
    label = f"{call['name']} [dim]{call['id']} {call['state']}[/dim]"
    branch = Tree(label) if branch is None else branch.add(label)
    for child in node["children"]:
        _tree(child, branch)
    return branch


@ls.command("call")
@click.option("--id", "call_id", required=True, help="ID of call")
@click.option("-r", "--result", is_flag=True, help="Include result of call")
@click.option("-t", "--tree", is_flag=True, help="Show forward call tree")
@click.option("-g", "--graph", is_flag=True, help="Show complete call graph (from the flow run's root)")
@json_flag
@pass_flow
def ls_call(ctx: FlowContext, call_id: str, result: bool, tree: bool, graph: bool, as_json: bool) -> Any:
    """List details about a call record"""
    with ctx.session() as session:
        if tree or graph:
            data = call_queries.call_tree(session, call_id, whole_flow=graph)
            if ctx.as_json or as_json:
                click.echo(json.dumps(data, default=str, indent=2))
            else:
                ctx.console.print(_tree(data))
            return data
        call = call_queries.get_call(session, call_id)
        record = {c: getattr(call, c) for c in CALL_COLUMNS if c != "result"}
        events = [{"name": e.name, "id": e.id, "created": e.created, "note": e.note} for e in call.events]
        value = call.result
    if ctx.as_json or as_json:
        click.echo(json.dumps({**record, "events": events, **({"result": value} if result else {})}, default=str, indent=2))
        return record
    emit(ctx, [record], "Call", columns=("name", "id", "owner", "state", "started", "finished"))
    emit(ctx, [{"task": record["id"], "task_parent": record["parent"], "flow_parent": record["tracking"]}], "Provenance")
    emit(ctx, events, "Events")
    if record["error"]:
        click.echo(f"Error: {record['error']}")
    if result:
        click.echo(f"Result: {json.dumps(value, default=str)}")
    return record
