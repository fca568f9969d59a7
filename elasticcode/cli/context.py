"""What every `flow` command gets: resolved settings, output mode, database sessions."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from ..config import Settings
from ..db.engine import session_scope


@dataclass
class FlowContext:
    settings: Settings
    as_json: bool = False
    debug: bool = False

    @contextlib.contextmanager
    def session(self, admin: bool = False) -> Iterator[Session]:
        self.settings.require_db()  # the admin URL falls back to it, so both need it
        url = self.settings.admin_url if admin else self.settings.db
        with session_scope(url) as session:
            yield session

    @property
    def console(self) -> Console:
        return Console(soft_wrap=False)


pass_flow = click.make_pass_decorator(FlowContext)


def json_flag(f):
    """`--json` on a listing; `flow --json ...` sets it for every command."""
    return click.option("--json", "as_json", is_flag=True, default=False, help="Print JSON instead of a table")(f)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def emit(ctx: FlowContext, rows: Sequence[dict[str, Any]], title: str, as_json: bool = False,
         columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Print rows as a rich table (or JSON) and return them, so in-process callers get data."""
    rows = list(rows)
    if ctx.as_json or as_json:
        click.echo(json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows], indent=2, default=str))
        return rows
    columns = list(columns or (rows[0].keys() if rows else []))
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        table.add_column(column.replace("_", " ").title(), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    if rows:
        ctx.console.print(table)
    else:
        click.echo(f"no {title.lower()}")
    return rows


def say(ctx: FlowContext, message: str, **data: Any) -> None:
    """A one-line confirmation, or a JSON object under --json."""
    if ctx.as_json:
        click.echo(json.dumps({"message": message, **{k: _plain(v) for k, v in data.items()}}, default=str))
    else:
        click.echo(message)
