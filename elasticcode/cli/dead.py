"""`flow dead ls | show ID | retry ID...|--all | purge [ID...] [--yes]`: the dead letters.

A poison message (it killed its worker more times than the processor allows) and a call refused
for its signature are set aside in the list `ec:dead`, never lost; these commands look at them
and send them again (same call id, a fresh delivery count) or remove them.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .context import FlowContext, emit, json_flag, pass_flow, say


@click.group()
def dead() -> None:
    """Dead letters: calls set aside after too many deliveries, or refused"""


def _letters(ctx: FlowContext):
    from ..client.dead import DeadLetters

    return DeadLetters(ctx.settings)


@dead.command("ls")
@json_flag
@pass_flow
def dead_ls(ctx: FlowContext, as_json: bool) -> list[dict[str, Any]]:
    """List the dead letters, newest first"""
    frame = _letters(ctx).frame()
    rows = [{k: (None if _missing(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]
    return emit(ctx, rows, "Dead letters", as_json, columns=("call", "socket", "kind", "deliveries", "at", "state", "reason"))


def _missing(value: Any) -> bool:
    try:
        return value is None or value != value  # NaN / NaT
    except (TypeError, ValueError):
        return False


@dead.command("show")
@click.argument("call_id")
@pass_flow
def dead_show(ctx: FlowContext, call_id: str) -> dict[str, Any]:
    """Show one dead letter: its reason, arguments and headers, and the call's record"""
    data = _letters(ctx).show(call_id)
    click.echo(json.dumps(data, indent=2, default=str))
    return data


@dead.command("retry")
@click.argument("call_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Retry every dead letter that can be retried")
@pass_flow
def dead_retry(ctx: FlowContext, call_ids: tuple[str, ...], every: bool) -> list[str]:
    """Send dead letters again: same call id, a fresh delivery count"""
    if not call_ids and not every:
        raise click.UsageError("name the calls to retry (see `flow dead ls`), or pass --all")
    if call_ids and every:
        raise click.UsageError("give call ids or --all, not both")
    handles = _letters(ctx).retry(None if every else list(call_ids), every=every)
    ids = [h.id for h in handles]
    say(ctx, f"retried {len(ids)} call(s)" + (f": {', '.join(ids)}" if ids else ""), calls=ids)
    return ids


@dead.command("purge")
@click.argument("call_ids", nargs=-1)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (for scripts)")
@pass_flow
def dead_purge(ctx: FlowContext, call_ids: tuple[str, ...], yes: bool) -> int:
    """Remove dead letters (all, or the calls named); asks first unless --yes"""
    from ..client.dead import check_found

    letters = _letters(ctx)
    found = letters.entries(list(call_ids) if call_ids else None)
    if call_ids:
        check_found(call_ids, found)
    if not found:
        say(ctx, "no dead letters to purge", removed=0)
        return 0
    if not yes:
        click.confirm(f"Remove {len(found)} dead letter(s) for good? Their calls will not run", abort=True, err=True)
    removed = letters.remove(found)
    say(ctx, f"removed {removed} dead letter(s)", removed=removed)
    return removed
